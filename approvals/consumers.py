"""The live queue socket: one connection per open queue page.

The page connects with htmx's ws extension; every frame after the JSON
hello is HTML that htmx swaps out of band: the changed action's row,
rendered from the same partial as the page, or its removal, plus the
counters. `?lane=shadow` asks for the shadow lane's rows instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.template.loader import render_to_string
from django.utils import timezone

from approvals import live, queue
from approvals.models import Action


@database_sync_to_async
def _department_ids(user: Any) -> list[int]:
    return queue.decider_department_ids(user)


@database_sync_to_async
def _render_update(user: Any, action_id: str, lane: queue.Lane) -> str | None:
    """The HTML this user's page needs about one changed action; None when
    the action is not of a department the user decides for (any more)."""
    # Re-read membership per message: the user may have stopped leading the
    # department, or the action been re-routed, since the socket opened.
    if not Action.objects.filter(pk=action_id, department_id__in=queue.decider_department_ids(user)).exists():
        return None
    now = timezone.now()
    action = queue.find_for(user, action_id)
    context = {
        "user": user,
        "action": action,
        "action_id": action_id,
        "place": queue.place_of(action, now) if action else None,
        "lane": lane,
        "lane_places": queue.PLACES_BY_LANE[lane],
        "now": now,
        "counts": queue.counts_for(user, now),
    }
    return render_to_string("approvals/queue.html#live-update", context).strip()


class QueueConsumer(AsyncJsonWebsocketConsumer):
    """Joins the groups of the departments the user decides for and pushes
    each change as HTML, re-checking per message what this user may see.
    Anonymous sockets are closed before accepting."""

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
        await self.accept()
        await self.send_json({"type": "hello", "departments": self.department_ids})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def action_changed(self, event: dict[str, Any]) -> None:
        html = await _render_update(self.scope["user"], event["action_id"], self.lane)
        if html is not None:
            await self.send(text_data=html)
