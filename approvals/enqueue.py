"""Work that travels upward: Celery tasks named, not imported.

approvals.tasks is the Celery door: it imports the services, dispatch,
autonomy and monitoring parts to run their work. Those parts queue tasks in
turn (route a new proposal, dispatch an approved action, tell people), so
they name the task here and it is looked up when it is queued. No import
cycle, and a test can still patch `approvals.tasks.<name>.delay`.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from approvals import after_answer

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
