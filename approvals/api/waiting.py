"""Long-poll without polling: a waiting request listens on the action's
channel-layer group (approvals.live publishes there after every commit).

Should the channel layer fail (Redis down or restarting), the wait goes on
by re-reading the database every POLL_SECONDS instead: slower to notice,
never an error, and never a missed change.

A wait holds no thread and no database connection: it parks on the event
loop, and its reads run in the loop's shared executor (`in_shared_thread`),
giving their connection back as they end. It leaves the action's group
however it ends: answered, timed out, or cancelled because the client hung
up (approvals.api.parking), even when cancelled again while leaving."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from redis.exceptions import RedisError

from approvals import live
from approvals.rules.lifecycle import Status

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# What a channel layer on Redis raises when Redis goes away (redis-py's errors,
# and OSError for a refused or reset socket).
LAYER_ERRORS = (RedisError, OSError)

T = TypeVar("T")
IsPending = Callable[[], Awaitable[bool]]


async def in_shared_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in the event loop's shared executor, not in a thread of the
    request's own (which thread-sensitive calls inside Django's handler
    start), then give its database connection back to the pool."""

    def run() -> T:
        try:
            return fn(*args)
        finally:
            connection.close()

    return await sync_to_async(run, thread_sensitive=False)()


async def until_settled(
    action_id: object,
    timeout: float,
    is_pending: IsPending,
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
    channel: str | None = None
    try:
        try:
            channel = await layer.new_channel()
            await layer.group_add(group, channel)
        except LAYER_ERRORS:
            log.warning("Long poll on %s falls back to polling: the channel layer does not answer", action_id)
            channel = None
        if not await is_pending():
            return
        if channel is not None and await _listen(layer, channel, deadline, still):
            return
        await _poll(deadline, is_pending)
    finally:
        if channel is not None:
            await _leave(layer, group, channel)


# Leavings under way, kept referenced until done (the loop holds tasks only weakly).
_leaving: set[asyncio.Task[None]] = set()


async def _leave(layer: Any, group: str, channel: str) -> None:
    """Leave the group in a task of its own: a second cancellation of the wait
    (the server stopping) must not cut the leaving short."""
    leaving = asyncio.ensure_future(_discard(layer, group, channel))
    _leaving.add(leaving)
    leaving.add_done_callback(_leaving.discard)
    await asyncio.shield(leaving)


async def _discard(layer: Any, group: str, channel: str) -> None:
    try:
        await layer.group_discard(group, channel)
    except LAYER_ERRORS as failed:
        log.warning("A long poll could not leave %s (%s): the membership stays until the group expires", group, failed)


async def _listen(layer: Any, channel: str, deadline: float, still: frozenset[str]) -> bool:
    """Wait for a message that the action left pending. True when one came;
    False at the deadline, or at once when the layer fails (the caller then polls)."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await _receive(layer, channel, left)
        except LAYER_ERRORS:
            log.warning("Long poll falls back to polling: the channel layer failed mid-wait")
            return False
        if message is None:
            return False
        # Routing and a critical action's first approval also publish:
        # keep waiting until the status really moves on.
        if message.get("status") not in still:
            return True
    return False


# Receives given up on, kept referenced until they end (see _receive).
_abandoned: set[asyncio.Task[Any]] = set()


async def _receive(layer: Any, channel: str, seconds: float) -> dict[str, Any] | None:
    """The next message on `channel`, or None after `seconds`.

    The receive runs in a task of its own, cancelled but not awaited when the
    wait ends. A receive cancelled during its blocking read (channels_redis's
    BZPOPMIN, in redis-py) can go on reading instead of ending: awaited, as
    `asyncio.wait_for` awaits what it cancels, it held a hung-up waiter in its
    group until the server stopped."""
    receiving = asyncio.ensure_future(layer.receive(channel))
    try:
        done, _ = await asyncio.wait({receiving}, timeout=seconds)
    finally:
        if not receiving.done():
            receiving.cancel()
            _abandoned.add(receiving)
            receiving.add_done_callback(_forget)
    return receiving.result() if done else None


def _forget(receiving: asyncio.Task[Any]) -> None:
    _abandoned.discard(receiving)
    if not receiving.cancelled():
        receiving.exception()  # read, so asyncio does not log it: nobody waits for it now


async def _poll(deadline: float, is_pending: IsPending) -> None:
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(POLL_SECONDS, left))
        if not await is_pending():
            return
