from __future__ import annotations

import os

from celery import Celery

from approvals.monitoring.heartbeats import WorkerHeartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Celery's Django fixup, keeping each worker process's connections warm across tasks.
app = Celery("countersign", fixups=["config.worker_connections:fixup"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(WorkerHeartbeat)  # its sign of life for /healthz
