"""The live sockets: the queue's, one per open queue page, and the alert
badge's, one per open page (AlertConsumer, at the end).

The queue page connects with htmx's ws extension; every frame after the JSON
hello is HTML that htmx swaps out of band: the changed action's row,
rendered from the same partial as the page, or its removal, plus the
counters. `?lane=shadow` asks for the shadow lane's rows instead.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from approvals import live
from approvals.pages import alerts as alert_pages
from approvals.pages import fanout
from approvals.pages.socket_outage import TRY_AGAIN_LATER, ClosesWhileLayerDown
from approvals.reach import reach_of
from approvals.reads import queue
from audit.people import Person


@database_sync_to_async
def _department_ids(user: Person) -> list[int]:
    """The groups of every department the user leads or backs up: whether a
    change reaches their lanes is decided per message (approvals.reach)."""
    return sorted(reach_of(user).member_ids)


class QueueConsumer(ClosesWhileLayerDown, AsyncJsonWebsocketConsumer):
    """Hears of the changes of the departments the user decides for through
    its process (approvals.pages.fanout) and pushes each as HTML, re-checked
    per message for what this user may see. Anonymous sockets are closed
    before accepting; while the channel layer does not answer, sockets are
    closed with 1013 (approvals.pages.socket_outage)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # The frames: sent by the process's listener, not by this consumer's
        # loop. Rendered already, they need no database (so not Channels'
        # hop to the database thread before each message either).
        self.outbox = fanout.Outbox(self.send_frame)

    # Channels reads a consumer's own channel in the layer; this one reads
    # the inbox its process fills, and its own channel stays unused.
    @property
    def channel_receive(self) -> Any:
        return self.inbox.get

    @channel_receive.setter
    def channel_receive(self, receive: Any) -> None:
        pass

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.lane = queue.lane_from((query.get("lane") or [None])[0])
        department_ids = await _department_ids(user)
        self.fanout = fanout.of_this_process(self.channel_layer)
        await self.fanout.join(
            fanout.Viewer(self.channel_name, user, self.lane), department_ids, self.outbox, self.inbox
        )
        await self.accept()
        await self.send_json({"type": "hello", "departments": department_ids})
        self.outbox.open()  # the changes since joining, then each as it comes

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "fanout"):
            await self.fanout.leave(self.channel_name)

    async def send_frame(self, html: str) -> None:
        await self.send(text_data=html)

    async def queue_missed(self, message: dict[str, Any]) -> None:
        """A change this socket should have shown could not be rendered: the
        page reconnects and re-syncs its lane."""
        await self.close(code=TRY_AGAIN_LATER)


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
