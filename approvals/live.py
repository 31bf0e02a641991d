"""Live updates: the one place that talks to the channel layer.

Services call these after commit; consumers and long-polls listen on the
groups named here.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from approvals import after_answer

# The ASGI server's event loop, on the embedded default: the in-memory layer's
# queues belong to it, so sends from other threads (the scheduler, in-process
# tasks) must be handed to that loop rather than run on a loop of their own.
_server_loop: asyncio.AbstractEventLoop | None = None


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _server_loop
    _server_loop = loop


def department_group(department_id: int) -> str:
    return f"department.{department_id}"


def action_group(action_id: object) -> str:
    return f"action.{action_id}"


def _send(groups: list[str], message: dict[str, Any]) -> None:
    """Send `message` to each group: through the agent API's door, on its
    event loop once the answer is out, with the sends of the requests
    answered in the same few milliseconds (after_answer.Gathering); elsewhere
    now, crossing to an event loop once for all the groups."""
    layer = get_channel_layer()
    if layer is None:
        return
    sends = [(group, message) for group in groups]
    if after_answer.later_on_loop(partial(_gathered_sends.add, sends)):
        return

    loop = _server_loop
    if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
        try:
            on_server_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_server_loop = False
        if not on_server_loop:
            asyncio.run_coroutine_threadsafe(_send_together(sends), loop).result(timeout=5)
            return
    async_to_sync(_send_together)(sends)


async def _send_together(sends: list[tuple[str, dict[str, Any]]]) -> None:
    """In the round trips of one group send where the layer can
    (config.channel_layer), else one after the other (the in-memory layer)."""
    layer = get_channel_layer()
    if layer is None:
        return
    if hasattr(layer, "group_send_many"):
        await layer.group_send_many(sends)
        return
    for group, message in sends:
        await layer.group_send(group, message)


async def _send_gathered(gathered: list[list[tuple[str, dict[str, Any]]]]) -> None:
    await _send_together([send for sends in gathered for send in sends])


_gathered_sends: after_answer.Gathering[list[tuple[str, dict[str, Any]]]] = after_answer.Gathering(_send_gathered)


def publish_action_changed(action_id: object, department_id: int, status: str) -> None:
    """Tell every open queue of the department, and anyone waiting on this
    action, that it changed. Receivers re-read the database: the message
    carries ids, never content a stale sender could get wrong."""
    _send([department_group(department_id), action_group(action_id)], _changed(action_id, department_id, status))


def _changed(action_id: object, department_id: int, status: str) -> dict[str, Any]:
    return {"type": "action.changed", "action_id": str(action_id), "department_id": department_id, "status": status}


def publish_action_proposed(action_id: object, department_id: int, status: str) -> None:
    """A new action, to its department's open queues. Not to its own group:
    whoever waits on it subscribed after it was answered, and re-reads the
    database once subscribed (approvals.api.waiting.until_settled), so the
    message would tell them nothing."""
    _send([department_group(department_id)], _changed(action_id, department_id, status))


# ---------------------------------------------------------------- alerts

ALERTS_FOR_ADMINS = "alerts.admins"


def alerts_department_group(department_id: int) -> str:
    return f"alerts.department.{department_id}"


def alerts_owner_group(user_id: int) -> str:
    return f"alerts.owner.{user_id}"


def publish_alert_changed(alert_id: int, department_id: int, owner_id: int | None) -> None:
    """Tell every open page of the people who see this alert (the
    department's leads, the agent's owner, admins) to refresh their alert
    badge. Ids only: each socket re-reads what its user may see."""
    message = {"type": "alert.changed", "alert_id": alert_id}
    groups = [alerts_department_group(department_id), ALERTS_FOR_ADMINS]
    if owner_id is not None:
        groups.append(alerts_owner_group(owner_id))
    _send(groups, message)
