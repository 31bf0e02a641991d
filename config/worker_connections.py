"""How a Celery worker holds its database connections: warm, across tasks.

Celery's Django fixup closes every connection before and after each task and,
under the prefork pool, closes the process's whole psycopg pool as well. So
each task opened fresh connections (918 for 400 tasks), and the audit sealer
thread beside the tasks found the pool closed under it ("pool has already
been opened/closed and cannot be reused": "Sealing the audit chain failed").

Here a task starts and ends as a request does: `close_old_connections` gives
its connection back to the pool, which lives as long as the process. What
fork needs is left as it was: a child still drops the connections it
inherited (the fixup's `worker_process_init`), and the main process closes
its pool after each heartbeat (approvals.monitoring.heartbeats), so a child
forked later inherits none. Since a pooled connection now outlives a task,
each child checks a connection as the pool hands it out (one round trip per
task): one PostgreSQL dropped while it sat idle, on a restart say, is
replaced instead of failing the next task.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.fixups.django import DjangoFixup, DjangoWorkerFixup
from django.db import close_old_connections, connections


class WarmPoolWorkerFixup(DjangoWorkerFixup):
    def on_worker_process_init(self, **kwargs: Any) -> None:
        check_pooled_connections_when_handed_out()
        super().on_worker_process_init(**kwargs)

    def on_task_prerun(self, sender: Task, **kwargs: Any) -> None:
        if not getattr(sender.request, "is_eager", False):
            close_old_connections()

    def on_task_postrun(self, sender: Task, **kwargs: Any) -> None:
        if not getattr(sender.request, "is_eager", False):
            close_old_connections()
            self.close_cache()


class WarmPoolDjangoFixup(DjangoFixup):
    _worker_fixup: DjangoWorkerFixup | None

    @property
    def worker_fixup(self) -> DjangoWorkerFixup:
        if self._worker_fixup is None:
            self._worker_fixup = WarmPoolWorkerFixup(self.app)
        return self._worker_fixup

    @worker_fixup.setter
    def worker_fixup(self, value: DjangoWorkerFixup) -> None:
        self._worker_fixup = value


def fixup(app: Celery) -> DjangoFixup | None:
    """Celery's own `celery.fixups.django:fixup`, with the worker part above."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    return WarmPoolDjangoFixup(app).install()


def check_pooled_connections_when_handed_out() -> None:
    """Django's health checks, which the pool runs as it hands a connection
    out; set in each child of a prefork worker before its first query, so
    every pool it makes checks. (A solo-pool worker, as the tests run in a
    thread of their own process, leaves the settings alone.)"""
    for alias in connections:
        connections.settings[alias]["CONN_HEALTH_CHECKS"] = True
