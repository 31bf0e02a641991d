"""Long-poll without polling: a waiting request listens on the action's
channel-layer group (approvals.live publishes there after every commit).

Should the channel layer fail (Redis down or restarting), the wait goes on
by re-reading the database every POLL_SECONDS instead: slower to notice,
never an error, and never a missed change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from approvals import live
from approvals.rules.lifecycle import Status

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# What a channel layer on Redis raises when Redis goes away (redis-py's errors,
# and OSError for a refused or reset socket).
LAYER_ERRORS = (RedisError, OSError)


async def until_settled(
    action_id: object,
    timeout: float,
    is_pending: Callable[[], Awaitable[bool]],
    *,
    still: frozenset[str] = frozenset({Status.PENDING}),
) -> None:
    """Return as soon as the action leaves `pending` (or, with `still`, every
    status in it: the MCP door waits through a dispatch too), or after
    `timeout` seconds; `is_pending` reads whether it is still in one of them.

    Subscribes first, then re-checks the database, so a change that lands
    between the caller's read and the subscription is not missed."""
    deadline = time.monotonic() + timeout
    layer = get_channel_layer()
    group = live.action_group(action_id)
    channel = None
    try:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
    except LAYER_ERRORS:
        log.warning("Long poll on %s falls back to polling: the channel layer does not answer", action_id)
        channel = None
    try:
        if not await is_pending():
            return
        if channel is not None and await _listen(layer, channel, deadline, still):
            return
        await _poll(deadline, is_pending)
    finally:
        if channel is not None:
            with contextlib.suppress(*LAYER_ERRORS):
                await layer.group_discard(group, channel)


async def _listen(layer: object, channel: str, deadline: float, still: frozenset[str]) -> bool:
    """Wait for a message that the action left pending. True when one came;
    False at the deadline, or at once when the layer fails (the caller then polls)."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(channel), left)  # type: ignore[attr-defined]
        except TimeoutError:
            return False
        except LAYER_ERRORS:
            log.warning("Long poll falls back to polling: the channel layer failed mid-wait")
            return False
        # Routing and a critical action's first approval also publish:
        # keep waiting until the status really moves on.
        if message.get("status") not in still:
            return True
    return False


async def _poll(deadline: float, is_pending: Callable[[], Awaitable[bool]]) -> None:
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(POLL_SECONDS, left))
        if not await is_pending():
            return
