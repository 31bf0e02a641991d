"""Work that travels upward: Celery tasks named, not imported.

approvals.tasks is the Celery door: it imports the services, dispatch,
autonomy and monitoring parts to run their work. Those parts queue tasks in
turn (route a new proposal, dispatch an approved action, tell people), so
they name the task here and it is looked up when it is queued. No import
cycle, and a test can still patch `approvals.tasks.<name>.delay`.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils.module_loading import import_string

from approvals import after_answer

log = logging.getLogger(__name__)

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
    task of a list, run on `item`. Through the agent API's door, with the
    items of the other requests answered within GATHER_SECONDS, as one task
    (after_answer.Gathering); elsewhere (pages, the MCP door, tasks) at
    once, as a list of one. Robust as delay_on_commit: a broker that is down
    is logged, and the periodic sweep redoes what matters."""

    def committed() -> None:
        if not after_answer.later_on_loop(partial(gathering(name).add, item)):
            _send(name, [item])

    transaction.on_commit(committed, robust=True)


_gatherings: dict[str, after_answer.Gathering[str]] = {}


def gathering(name: str) -> after_answer.Gathering[str]:
    """The door's gathering for approvals.tasks.<name>, queued from a thread
    (queueing waits on the broker)."""
    if name not in _gatherings:
        send = sync_to_async(_send_from_thread, thread_sensitive=False)
        _gatherings[name] = after_answer.Gathering(partial(send, name))
    return _gatherings[name]


def _send_from_thread(name: str, items: list[str]) -> None:
    """_send, then the thread's database connections handed back to the pool:
    eager tasks (the embedded default, the tests) run here, in a thread of
    the loop's executor that no request_finished ever closes."""
    try:
        _send(name, items)
    finally:
        connections.close_all()


def _send(name: str, items: list[str]) -> None:
    try:
        task(name).delay(items)
    except Exception:
        log.exception("Queueing %s for %s failed", name, items)
