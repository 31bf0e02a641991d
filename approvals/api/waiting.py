"""Long-poll without polling: a waiting request listens on the action's
channel-layer group (approvals.live publishes there after every commit)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer
from redis.exceptions import TimeoutError as RedisTimeoutError

from approvals import live
from approvals.lifecycle import Status


async def until_settled(action_id: object, timeout: float, is_pending: Callable[[], Awaitable[bool]]) -> None:
    """Return as soon as the action leaves `pending`, or after `timeout` seconds.

    Subscribes first, then re-checks the database, so a change that lands
    between the caller's read and the subscription is not missed."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = live.action_group(action_id)
    await layer.group_add(group, channel)
    try:
        if not await is_pending():
            return
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            # A Redis hiccup ends the wait like a time-out: the caller re-reads the database.
            with contextlib.suppress(asyncio.TimeoutError, RedisTimeoutError):
                message = await asyncio.wait_for(layer.receive(channel), left)
                # Routing and a critical action's first approval also publish:
                # keep waiting until the status really moves on.
                if message.get("status") != Status.PENDING:
                    return
    finally:
        await layer.group_discard(group, channel)
