"""Celery beat's stand-in for the embedded run: a daemon thread that runs
each entry of CELERY_BEAT_SCHEDULE in-process at its interval. With Redis
configured, the real `celery beat` process does this instead."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import close_old_connections

from approvals.monitoring import heartbeats

log = logging.getLogger(__name__)


def _seconds(schedule: object) -> float:
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, (int, float)):
        return float(schedule)
    raise TypeError(f"The embedded scheduler runs interval schedules only, not {schedule!r}.")


def run_forever(stop: threading.Event) -> None:
    current_app.loader.import_default_modules()  # registers the autodiscovered tasks
    entries = {
        name: (entry["task"], _seconds(entry["schedule"])) for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    }
    next_run = {name: time.monotonic() + interval for name, (_, interval) in entries.items()}
    heartbeat = heartbeats.Throttled(heartbeats.BEAT)  # this thread plays beat, for /healthz too
    while not stop.is_set():
        heartbeat()
        now = time.monotonic()
        for name, (task_name, interval) in entries.items():
            if now < next_run[name]:
                continue
            next_run[name] = now + interval
            try:
                current_app.tasks[task_name].apply()
            except Exception:  # one failing job must not stop the others
                log.exception("Periodic job %s failed", name)
            finally:
                close_old_connections()
        stop.wait(1.0)


def start() -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(stop,), name="embedded-beat", daemon=True).start()
    return stop
