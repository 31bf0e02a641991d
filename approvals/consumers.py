"""The live queue socket: one connection per open queue page."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from approvals import live
from approvals.models import Action, Department


@database_sync_to_async
def _department_ids(user: Any) -> list[int]:
    return list(Department.objects.filter(leads=user).values_list("pk", flat=True)) + list(
        Department.objects.filter(backup_approvers=user).values_list("pk", flat=True)
    )


@database_sync_to_async
def _action_in(action_id: str, department_ids: list[int]) -> bool:
    return Action.objects.filter(pk=action_id, department_id__in=department_ids).exists()


class QueueConsumer(AsyncJsonWebsocketConsumer):
    """Joins the groups of the departments the user decides for and forwards
    their action changes. Anonymous sockets are closed before accepting."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.department_ids = sorted(set(await _department_ids(user)))
        self.groups_joined = [live.department_group(pk) for pk in self.department_ids]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "departments": self.department_ids})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def action_changed(self, event: dict[str, Any]) -> None:
        # Re-check per message: the group is per department, but an action
        # could have been re-routed since the message was sent.
        if await _action_in(event["action_id"], self.department_ids):
            await self.send_json({"type": "action.changed", "action_id": event["action_id"], "status": event["status"]})
