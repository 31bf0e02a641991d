"""Work a request may leave until its answer has gone out.

A new proposal's live update and its routing task cost the agent a hop to
the event loop and a Redis round trip each, yet the agent's answer needs
neither. The agent API's door (config.agent_api) opens a `Pending` for each
request and runs it once the answer is sent; anywhere else (pages, tasks,
the test client, the MCP door) the work runs at once.

Sync work (`later`) runs on the request's thread, before request_finished
hands the database connection back. A live update's sends (`later_on_loop`)
run on the door's event loop after that, where the channel layer lives: the
request's thread does not wait on the loop for them. Each failure is
logged, never raised: by then the change has committed, as with a robust
on_commit. Only work the answer does not need belongs here.

Loop work may go further still, into a `Gathering`: what the door's
requests leave in the same 20 ms goes out together, once the window closes
(a new proposal's routing task and its live update).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

from django.db import transaction

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the door gathers what its requests leave for after their answers (`Gathering`).
GATHER_SECONDS = 0.02

Work = Callable[[], None]
LoopWork = Callable[[], Awaitable[None]]


class Pending:
    """One request's work for after its answer."""

    def __init__(self) -> None:
        self.work: list[Work] = []
        self.loop_work: list[LoopWork] = []

    def run(self) -> None:
        """On the request's thread: run and remove each piece, logging failures."""
        while self.work:
            piece = self.work.pop(0)
            try:
                piece()
            except Exception:
                log.exception("Work left until after the answer failed")

    async def run_on_loop(self) -> None:
        """On the door's event loop, after `run` (which may add to it)."""
        while self.loop_work:
            piece = self.loop_work.pop(0)
            try:
                await piece()
            except Exception:
                log.exception("Work left until after the answer failed")


_pending: ContextVar[Pending | None] = ContextVar("countersign_after_answer", default=None)


def later(work: Work) -> None:
    """Run `work` once the answer has gone out, or now outside the door."""
    pending = _pending.get()
    if pending is None:
        work()
    else:
        pending.work.append(work)


def later_on_loop(work: LoopWork) -> bool:
    """Inside the door, leave `work` for its event loop once the answer is
    out, and say so; outside it, False: the caller runs the work itself."""
    pending = _pending.get()
    if pending is None:
        return False
    pending.loop_work.append(work)
    return True


def on_commit(work: Work) -> None:
    """Once the current transaction commits, `later`; robust, as the work
    of a change that has committed."""
    transaction.on_commit(lambda: later(work), robust=True)


@contextmanager
def deferring() -> Iterator[Pending]:
    """For the door: what `later` is given while the block runs waits in the Pending."""
    pending = Pending()
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)


class Gathering(Generic[T]):
    """Items that the requests of one event loop leave for after their
    answers, gathered: the first opens a window of GATHER_SECONDS, and the
    items that arrive before it closes go to `send` together, in a task of
    the loop's own.

    An agent's next request arrives as its answer does; work sent at once,
    on the same interpreter, competes with that request's start. Gathered, it
    goes out once for a burst, and later: a new proposal's routing task (a
    Celery publish costs more CPU than the rest of that work) and its live
    update (docs/performance.md). What a process holds when it stops
    (GATHER_SECONDS' worth at most) is the sweep's to make up, as when Redis
    is down."""

    def __init__(self, send: Callable[[list[T]], Awaitable[None]], seconds: float = GATHER_SECONDS) -> None:
        self.send, self.seconds = send, seconds
        self._open: WeakKeyDictionary[asyncio.AbstractEventLoop, list[T]] = WeakKeyDictionary()
        self._sending: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references

    async def add(self, item: T) -> None:
        """On the door's event loop, once the answer is out."""
        loop = asyncio.get_running_loop()
        items = self._open.get(loop)
        if items is None:
            items = self._open[loop] = []
            # In a context of its own: not the first request's (its Pending,
            # its audit context), which the items of the others do not share.
            loop.call_later(self.seconds, self._send_gathered, loop, context=contextvars.Context())
        items.append(item)

    def _send_gathered(self, loop: asyncio.AbstractEventLoop) -> None:
        sending = loop.create_task(self._send_or_log(self._open.pop(loop)))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send_or_log(self, items: list[T]) -> None:
        try:
            await self.send(items)
        except Exception:
            log.exception("Sending what was gathered after the answers failed")
