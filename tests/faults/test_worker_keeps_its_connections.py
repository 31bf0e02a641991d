"""A prefork Celery worker, as the Procfile runs it, on PostgreSQL and Redis:
its processes keep their database connections across tasks, and the audit
sealer thread beside the tasks seals every event they write, never failing.

Connections opened are counted by PostgreSQL itself (pg_stat_database's
`sessions` of the test database), so the count includes whatever the worker
opens, in any of its processes and threads."""

from __future__ import annotations

import signal

import pytest
from django.db import connection

from approvals.models import Action
from audit.models import AuditEvent
from audit.verification import verify
from tests.dispatch.test_dispatch_worker import start_worker_process, stop, worker_queue  # noqa: F401
from tests.support.servers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BURST = 50
CONCURRENCY = 2
WORKER_APP = "countersign-test-worker"


def sessions_opened() -> int:
    """Connections ever made to this database. A new backend reports itself
    as it first waits for a query, before its client can use it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def routed_and_sealed(actions: list[Action]) -> bool:
    routed = Action.objects.filter(pk__in=[a.pk for a in actions], routed_at__isnull=False).count()
    return routed == len(actions) and not AuditEvent.objects.filter(seq__isnull=True).exists()


def test_a_prefork_worker_keeps_its_connections_and_seals_every_event_its_tasks_write(
    worker_queue,  # noqa: F811
    propose,
    tmp_path,
    monkeypatch,
):
    # The main process opens a connection for each heartbeat and closes its
    # pool after it (so no child forks with its connections): not per task,
    # so leave it out of the count.
    monkeypatch.setenv("HEARTBEAT_SECONDS", "3600")
    log = tmp_path / "worker.log"
    worker = start_worker_process(
        worker_queue, "keeper", log, pool="prefork", concurrency=CONCURRENCY, sealing="background"
    )
    try:
        # Warm up: each child routes something, so each has its pool and sealer.
        warm = [propose() for _ in range(2 * CONCURRENCY)]
        wait_for(lambda: routed_and_sealed(warm), timeout=60, what="the warm-up to be routed and sealed")
        before = sessions_opened()

        burst = [propose() for _ in range(BURST)]
        wait_for(lambda: routed_and_sealed(burst), timeout=60, what="the burst to be routed and sealed")
        opened = sessions_opened() - before
    finally:
        stop(worker, signal.SIGTERM)

    output = log.read_text()
    assert "Sealing the audit chain failed" not in output, output
    routed_events = AuditEvent.objects.filter(verb="action.routed", object_id__in=[str(a.pk) for a in burst])
    assert routed_events.count() == BURST
    assert not routed_events.filter(seq__isnull=True).exists()
    assert verify().ok, verify().problem
    # Each child's task thread and sealer thread hold a warm connection or
    # two between them; closing them around every task would open at least
    # one per task (this process's proposals reuse its one connection).
    assert opened <= 2 * CONCURRENCY, f"{opened} connections opened for {BURST} tasks"


def test_a_worker_replaces_the_pooled_connections_postgresql_dropped_while_they_sat_idle(
    worker_queue,  # noqa: F811
    propose,
    tmp_path,
):
    log = tmp_path / "worker.log"
    worker = start_worker_process(
        worker_queue, "survivor", log, pool="prefork", sealing="background", application_name=WORKER_APP
    )
    try:
        first = propose()
        wait_for(lambda: routed_and_sealed([first]), timeout=60, what="the first proposal to be routed and sealed")
        dropped = drop_worker_connections()

        second = propose()
        wait_for(lambda: routed_and_sealed([second]), timeout=30, what="the worker to route after the drop")
    finally:
        stop(worker, signal.SIGTERM)

    assert dropped >= 1  # its warm connections were there to drop
    output = log.read_text()
    assert "raised unexpected" not in output, output
    assert "Sealing the audit chain failed" not in output, output


def drop_worker_connections() -> int:
    """What a PostgreSQL restart does to the worker's idle pooled connections."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [WORKER_APP],
        )
        return cursor.fetchone()[0]
