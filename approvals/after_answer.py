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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import transaction

log = logging.getLogger(__name__)

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
