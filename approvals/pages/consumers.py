"""The live sockets: the queue's, one per open queue page, and the alert
badge's, one per open page (AlertConsumer, at the end).

The queue page connects with htmx's ws extension; every frame after the JSON
hello is HTML that htmx swaps out of band: the changed action's row,
rendered from the same partial as the page, or its removal, plus the
counters. `?lane=shadow` asks for the shadow lane's rows instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from approvals import live
from approvals.pages import alerts as alert_pages
from approvals.pages import fanout
from approvals.pages.socket_outage import ClosesWhileLayerDown
from approvals.reach import reach_of
from approvals.reads import queue
from audit.people import Person


@database_sync_to_async
def _department_ids(user: Person) -> list[int]:
    """The groups of every department the user leads or backs up: whether a
    change reaches their lanes is decided per message (approvals.reach)."""
    return sorted(reach_of(user).member_ids)


class QueueConsumer(ClosesWhileLayerDown, AsyncJsonWebsocketConsumer):
    """Joins the groups of the departments the user decides for and pushes
    each change as HTML, re-checking per message what this user may see.
    Anonymous sockets are closed before accepting; while the channel layer
    does not answer, sockets are closed with 1013 (approvals.pages.socket_outage)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.lane = queue.lane_from((query.get("lane") or [None])[0])
        self.department_ids = await _department_ids(user)
        self.groups_joined = [live.department_group(pk) for pk in self.department_ids]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        fanout.this_process.join(fanout.Viewer(self.channel_name, user, self.lane), self.department_ids)
        await self.accept()
        await self.send_json({"type": "hello", "departments": self.department_ids})

    async def disconnect(self, code: int) -> None:
        fanout.this_process.leave(self.channel_name)
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def action_changed(self, event: dict[str, Any]) -> None:
        html = await fanout.this_process.update_for(self.channel_name, event)
        if html is not None:
            await self.send(text_data=html)


@database_sync_to_async
def _alert_groups(user: Person) -> list[str]:
    """The groups of the alerts the user sees (approvals.reach): their agents',
    their departments', every one for admins."""
    reach = reach_of(user)
    groups = [live.alerts_owner_group(user.pk)]
    if reach.admin:
        groups.append(live.ALERTS_FOR_ADMINS)
    groups += [live.alerts_department_group(pk) for pk in sorted(reach.member_ids)]
    return groups


_alerts_for = database_sync_to_async(alert_pages.live_update)


class AlertConsumer(ClosesWhileLayerDown, AsyncWebsocketConsumer):
    """The alert badge's socket, open on every page: joins the groups of the
    alerts its user sees (departments they lead, agents they own, all for
    admins) and on each change sends the badge again, re-read for this user,
    with their open alerts on the alerts page (`?list=1`).
    Anonymous sockets are closed before accepting."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.with_list = parse_qs(self.scope.get("query_string", b"").decode()).get("list") == ["1"]
        self.groups_joined = await _alert_groups(user)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_current()  # whatever changed between the page's render and now

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def alert_changed(self, event: dict[str, Any]) -> None:
        await self.send_current()

    async def send_current(self) -> None:
        await self.send(text_data=await _alerts_for(self.user, with_list=self.with_list))
