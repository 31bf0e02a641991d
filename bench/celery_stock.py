"""The Celery app with Celery's own Django fixup, as config/celery.py was
before its workers kept their connections: every connection, and under the
prefork pool the whole pool, closed around each task. Only for the
comparison in bench/worker_bench.py."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("countersign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
