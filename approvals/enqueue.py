"""Work that travels upward: Celery tasks named, not imported.

approvals.tasks is the Celery door: it imports the services, dispatch,
autonomy and monitoring parts to run their work. Those parts queue tasks in
turn (route a new proposal, dispatch an approved action, tell people), so
they name the task here and it is looked up when it is queued. No import
cycle, and a test can still patch `approvals.tasks.<name>.delay`.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils.module_loading import import_string

from approvals import after_answer

log = logging.getLogger(__name__)

# How long the agent API's door gathers items for one task (`gather_on_commit`).
GATHER_SECONDS = 0.02

TASKS_MODULE = "approvals.tasks"


def task(name: str) -> Any:
    """approvals.tasks.<name>: a Celery task, or one of the module's queueing helpers."""
    return import_string(f"{TASKS_MODULE}.{name}")


def delay_on_commit(name: str, *args: Any) -> None:
    """Queue approvals.tasks.<name>(*args) once the current transaction commits
    (through the agent API's door, once its answer has gone out: no answer
    waits on a queued task; approvals.after_answer). Robust: the change has
    committed, so a broker that is down is logged, never raised to the
    caller; the periodic sweep redoes what matters."""
    after_answer.on_commit(lambda: task(name).delay(*args))


def call_on_commit(name: str, *args: Any) -> None:
    """Call approvals.tasks.<name>(*args) in this process once the transaction
    commits (a helper that queues with a countdown, or a task run inline),
    robustly, and after the answer as delay_on_commit."""
    after_answer.on_commit(lambda: task(name)(*args))


def gather_on_commit(name: str, item: str) -> None:
    """Once the current transaction commits, have approvals.tasks.<name>, a
    task of a list, run on `item`. Through the agent API's door, the items of
    GATHER_SECONDS go out together, as one task (`Gathering`); elsewhere
    (pages, the MCP door, tasks) at once, as a list of one. Robust as
    delay_on_commit: a broker that is down is logged, and the periodic sweep
    redoes what matters."""

    def committed() -> None:
        if not after_answer.later_on_loop(partial(_gathering(name).add, item)):
            _send(name, [item])

    transaction.on_commit(committed, robust=True)


class Gathering:
    """Items for one task of a list, gathered on each event loop of the
    agent API's door: the first opens a window of GATHER_SECONDS, and the
    items that arrive before it closes go out as one task, sent from a thread
    (queueing waits on the broker).

    Queueing a Celery task costs the process more CPU than the rest of a
    proposal's work after its answer, and sent at once it competes with the
    agent's next request, which arrives as the answer does
    (docs/performance.md). Gathered, it goes out once for a burst, and later
    than the next request's start. What a process holds when it stops
    (GATHER_SECONDS' worth at most) is not lost for good: the sweep routes a
    waiting action left unrouted (approvals.services.sweep.unrouted)."""

    def __init__(self, name: str, seconds: float = GATHER_SECONDS) -> None:
        self.name, self.seconds = name, seconds
        self._open: WeakKeyDictionary[asyncio.AbstractEventLoop, list[str]] = WeakKeyDictionary()
        self._sending: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references

    async def add(self, item: str) -> None:
        """On the door's event loop, once the answer is out."""
        loop = asyncio.get_running_loop()
        items = self._open.get(loop)
        if items is None:
            items = self._open[loop] = []
            loop.call_later(self.seconds, self._send_gathered, loop)
        items.append(item)

    def _send_gathered(self, loop: asyncio.AbstractEventLoop) -> None:
        items = self._open.pop(loop)
        # In a thread of the loop's executor, with the database connections
        # handed back after (eager tasks, as in the embedded default, run there).
        send = database_sync_to_async(_send, thread_sensitive=False)
        sending = loop.create_task(send(self.name, items))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)


_gatherings: dict[str, Gathering] = {}


def _gathering(name: str) -> Gathering:
    if name not in _gatherings:
        _gatherings[name] = Gathering(name)
    return _gatherings[name]


def _send(name: str, items: list[str]) -> None:
    try:
        task(name).delay(items)
    except Exception:
        log.exception("Queueing %s for %s failed", name, items)
