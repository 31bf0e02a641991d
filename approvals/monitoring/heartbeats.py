"""Signs of life of the background processes, for /healthz.

- A Celery worker records one every HEARTBEAT_SECONDS from its own timer
  (WorkerHeartbeat, a worker bootstep added in config/celery.py), whether
  or not tasks come. With the prefork pool (the default) the worker's main
  process also closes its database connection pool after each heartbeat, as
  Celery does in the children after each task: a child forked while the
  parent held pooled connections would inherit them, and closing them there
  cuts them off for the parent too.
- Celery beat records one as it ticks (HeartbeatScheduler, set as
  CELERY_BEAT_SCHEDULER); the embedded scheduler thread does the same.

Each is one row per role in the database, not in Redis, so /healthz can
still tell which process is down while Redis is.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any

from celery import bootsteps
from celery.beat import PersistentScheduler
from celery.concurrency import prefork
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

log = logging.getLogger(__name__)

WORKER = "worker"
BEAT = "beat"


def record(role: str) -> None:
    from approvals.models import Heartbeat  # Celery imports this module before Django's apps are ready

    Heartbeat.objects.update_or_create(role=role, defaults={"host": socket.gethostname(), "beat_at": timezone.now()})


def record_in_background(role: str) -> None:
    """record() for a worker's timer thread, beat's loop and the embedded scheduler thread."""
    try:
        record(role)
    except DatabaseError:
        # The database being down is /healthz's to report; the process itself goes on.
        log.warning("Could not record the %s heartbeat", role, exc_info=True)
    finally:
        close_old_connections()  # no request cycle here to give the connection back


class Throttled:
    """Records a role's heartbeat at most once per HEARTBEAT_SECONDS, however often it is called."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last >= settings.HEARTBEAT_SECONDS:
            self.last = now
            record_in_background(self.role)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Records the worker's heartbeat from the worker's timer."""

    requires = {"celery.worker.components:Timer", "celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.timer_entry: Any = None
        self.forks = False

    def start(self, worker: Any) -> None:
        self.forks = isinstance(worker.pool, prefork.TaskPool)
        self.beat()
        self.timer_entry = worker.timer.call_repeatedly(settings.HEARTBEAT_SECONDS, self.beat)

    def stop(self, worker: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()

    def beat(self) -> None:
        record_in_background(WORKER)
        if self.forks:
            for connection in connections.all(initialized_only=True):
                if hasattr(connection, "close_pool"):  # PostgreSQL's; a no-op without pooling
                    with contextlib.suppress(KeyError):
                        connection.close_pool()


class HeartbeatScheduler(PersistentScheduler):
    """Celery beat's default scheduler that also records beat's heartbeat as it ticks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.heartbeat = Throttled(BEAT)
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.heartbeat()
        # Tick at least as often as the heartbeat, so beat's row stays fresh between long intervals.
        return min(super().tick(*args, **kwargs), settings.HEARTBEAT_SECONDS)
