"""Live updates: the one place that talks to the channel layer.

Services call these after commit; consumers join the groups named here.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def department_group(department_id: int) -> str:
    return f"department.{department_id}"


def action_group(action_id: object) -> str:
    return f"action.{action_id}"


def publish_action_changed(action_id: object, department_id: int, status: str) -> None:
    """Tell every open queue of the department, and anyone waiting on this
    action, that it changed. Receivers re-read the database: the message
    carries ids, never content a stale sender could get wrong."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "action.changed", "action_id": str(action_id), "status": status}
    async_to_sync(layer.group_send)(department_group(department_id), message)
    async_to_sync(layer.group_send)(action_group(action_id), message)
