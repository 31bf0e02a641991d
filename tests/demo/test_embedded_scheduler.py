from __future__ import annotations

import time

import pytest

from approvals.demo import scheduler
from audit.log import Actor, record
from audit.models import AuditEvent


@pytest.mark.django_db(transaction=True)
def test_it_runs_the_beat_schedule_in_process(settings, department):
    """The embedded run has no celery beat: the scheduler thread runs the
    real periodic tasks by name, here the audit sealer."""
    settings.AUDIT_SEALING = "off"  # leave the event for the periodic job
    settings.CELERY_BEAT_SCHEDULE = {"seal": {"task": "audit.tasks.seal_audit_chain", "schedule": 0.05}}
    event = record("test.happened", department, actor=Actor.system())
    stop = scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while AuditEvent.objects.get(pk=event.pk).seq is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert AuditEvent.objects.get(pk=event.pk).seq is not None


def test_it_refuses_a_schedule_it_cannot_keep():
    with pytest.raises(TypeError, match="interval schedules only"):
        scheduler._seconds("*/5 * * * *")
