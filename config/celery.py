from __future__ import annotations

import os

from celery import Celery

from approvals.monitoring.heartbeats import WorkerHeartbeat
from config.celery_settings import DjangoSettings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Celery's Django fixup, keeping each worker process's connections warm across tasks.
app = Celery("countersign", fixups=["config.worker_connections:fixup"])
app.config_from_object(DjangoSettings(), namespace="CELERY")  # django.conf.settings, read faster
app.autodiscover_tasks()
app.steps["worker"].add(WorkerHeartbeat)  # its sign of life for /healthz
