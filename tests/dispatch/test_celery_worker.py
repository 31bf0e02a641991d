"""Tasks through a real Celery worker over Redis, not in-process.

The worker runs in a thread of this process, consumes a queue of its own
(so stale messages of other runs, or another worker on the same Redis,
can't interfere), and reads rows the test committed (transactional_db).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.utils import timezone

from agents.models import Tier
from approvals import tasks
from approvals.models import Action, Risk
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from config.celery import app as celery_app
from tests.support.servers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@dataclass
class TaskRun:
    name: str
    eager: bool
    routing_key: str | None
    thread: str
    retval: Any


@dataclass
class Worker:
    queue: str
    runs: list[TaskRun] = field(default_factory=list)

    def run_of(self, task_name: str) -> TaskRun:
        return wait_for(
            lambda: next((run for run in self.runs if run.name == task_name), None),
            what=f"the worker to run {task_name}",
        )


@pytest.fixture
def worker(real_services: None, short_lived_db_connections: None) -> Iterator[Worker]:
    """A solo-pool worker thread on a fresh queue, with eager mode off so
    .delay() really goes through Redis. Everything is restored afterwards."""
    queue = f"test-worker-{uuid4().hex[:12]}"
    overrides = {
        "task_always_eager": False,
        # Routing reads this per message: everything the code under test
        # enqueues lands on this test's queue.
        "task_default_queue": queue,
        # Leave pytest's log capture alone.
        "worker_hijack_root_logger": False,
    }
    saved = {key: celery_app.conf[key] for key in overrides}
    celery_app.conf.update(overrides)
    runs: list[TaskRun] = []

    def remember(sender: Any = None, retval: Any = None, **_: Any) -> None:
        request = sender.request
        runs.append(
            TaskRun(
                name=sender.name,
                eager=bool(request.is_eager),
                routing_key=(request.delivery_info or {}).get("routing_key"),
                thread=threading.current_thread().name,
                retval=retval,
            )
        )

    task_postrun.connect(remember, weak=False)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=[queue]):
            yield Worker(queue=queue, runs=runs)
    finally:
        task_postrun.disconnect(remember)
        celery_app.conf.update(saved)
        _delete_queue(queue)


def _delete_queue(name: str) -> None:
    """Remove the test's queue and its binding from Redis. Kombu deletes only
    bindings its channel knows of, so declare them on this channel first."""
    with celery_app.connection_for_write() as connection:
        bound = celery_app.amqp.queues[name](connection.default_channel)
        bound.declare()
        bound.delete()


def assert_ran_in_worker(run: TaskRun, worker: Worker) -> None:
    """The task came off this run's queue in Redis, into the worker's thread."""
    assert run.eager is False
    assert run.routing_key == worker.queue
    assert run.thread != threading.main_thread().name


def test_it_routes_a_proposal_through_the_worker(worker, propose, department):
    action = propose(tier=Tier.CONTRIBUTOR, risk=Risk.MEDIUM, amount=Decimal("250.00"))
    assert action.status == Status.PENDING

    routed = wait_for(
        lambda: Action.objects.filter(pk=action.pk, sla_deadline__isnull=False).first(),
        what="the worker to route the action",
    )

    assert_ran_in_worker(worker.run_of("approvals.tasks.route_actions"), worker)
    # Medium risk weighs 100; 250.00 adds int(log10(251) * 10) = 23.
    assert routed.priority == 123
    assert routed.sla_deadline == routed.created_at + timedelta(minutes=department.decision_sla_minutes)
    assert routed.status == Status.PENDING
    event = AuditEvent.objects.get(verb="action.routed", object_id=str(action.pk))
    assert event.actor_label == "router"
    assert event.after == {
        "department": "finance",
        "priority": 123,
        "sla_deadline": routed.sla_deadline.isoformat(),
    }


def test_it_expires_stale_actions_through_the_worker(worker, propose):
    stale, fresh = propose(), propose()
    # Both are routed by the worker first; wait, so the expiry below is the
    # only task left that can touch them.
    wait_for(
        lambda: Action.objects.filter(pk__in=[stale.pk, fresh.pk], sla_deadline__isnull=False).count() == 2,
        what="both proposals to be routed",
    )
    Action.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    tasks.expire_stale_actions.delay()

    run = worker.run_of("approvals.tasks.expire_stale_actions")
    assert_ran_in_worker(run, worker)
    assert run.retval == 1
    assert Action.objects.get(pk=stale.pk).status == Status.EXPIRED
    assert Action.objects.get(pk=fresh.pk).status == Status.PENDING
    event = AuditEvent.objects.get(verb="action.expired", object_id=str(stale.pk))
    assert event.before == {"status": "pending"}
    assert event.after["status"] == "expired"
    assert not AuditEvent.objects.filter(verb="action.expired", object_id=str(fresh.pk)).exists()
