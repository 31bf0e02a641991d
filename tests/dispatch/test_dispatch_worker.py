"""Dispatch through real Celery workers over Redis: an approval is
dispatched on commit; a suspension in the middle of a stream of approvals
stops every dispatch that had not started; and a worker killed (SIGKILL) in
the middle of a call is recovered by the sweep, with the same
Idempotency-Key and no second effect at the target."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from agents.models import AgentStatus
from agents.services import resume_agent, suspend_agent
from approvals import services, tasks
from approvals.models import Action, Execution, ExecutionKind, ExecutionOutcome
from approvals.rules.lifecycle import Status
from audit.log import Actor
from config.celery import app as celery_app
from tests.dispatch.test_celery_worker import _delete_queue, worker  # noqa: F401  (the in-thread worker fixture)
from tests.support.dispatching import approved, proposed, webhook_type
from tests.support.servers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_it_dispatches_an_approval_through_the_worker_once_it_commits(worker, agent, lead, receiver):  # noqa: F811
    action = approved(agent, lead, webhook_type(receiver.url))

    wait_for(lambda: Action.objects.filter(pk=action.pk, status=Status.SUCCEEDED).exists(), what="the dispatch")

    run = worker.run_of("approvals.tasks.dispatch_action")
    assert (run.eager, run.routing_key) == (False, worker.queue)
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [str(action.pk)]


def test_nothing_is_dispatched_after_a_suspension_in_the_middle_of_a_stream_of_approvals(
    worker,  # noqa: F811
    agent,
    lead,
    receiver,
):
    refunds = webhook_type(receiver.url)
    stream = [proposed(agent, refunds, note=f"order {n}") for n in range(30)]
    before, after = stream[:15], stream[15:]

    for action in before:
        services.approve(action.pk, lead)
        time.sleep(0.02)
    suspend_agent(agent, actor=Actor.user(lead), reason="It refunds the wrong orders.")
    suspended_at = timezone.now()
    for action in after:
        services.approve(action.pk, lead)
        time.sleep(0.02)
    # Let the worker drain every message the approvals queued.
    wait_for(lambda: not Action.objects.filter(status=Status.DISPATCHING).exists(), what="dispatches to finish")
    time.sleep(1.0)

    starts = Execution.objects.filter(action__in=stream, kind=ExecutionKind.DISPATCH)
    assert starts.exists()
    # A dispatch claimed as the suspension committed may start a moment later; never a second.
    assert max(starts.values_list("started_at", flat=True)) <= suspended_at + timedelta(seconds=1)
    assert not Execution.objects.filter(action__in=after).exists()
    assert set(Action.objects.filter(pk__in=[a.pk for a in after]).values_list("status", flat=True)) == {
        Status.APPROVED
    }
    assert not {r.headers["Idempotency-Key"] for r in receiver.requests} & {str(a.pk) for a in after}

    # Nothing was lost: after the resume, the held ones go.
    resume_agent(agent, actor=Actor.user(lead), reason="Fixed the order lookup.")
    wait_for(
        lambda: Action.objects.filter(pk__in=[a.pk for a in stream], status=Status.SUCCEEDED).count() == 30,
        timeout=30,
        what="the held dispatches after the resume",
    )
    assert len(receiver.effects) == 30


# ---------------------------------------------------------------- a worker killed mid-dispatch


@pytest.fixture
def worker_queue(real_services: None, short_lived_db_connections: None) -> Iterator[str]:
    """A fresh queue that this process enqueues to, for worker processes started by the test."""
    queue = f"test-dispatch-{uuid4().hex[:12]}"
    overrides = {"task_always_eager": False, "task_default_queue": queue}
    saved = {key: celery_app.conf[key] for key in overrides}
    celery_app.conf.update(overrides)
    try:
        yield queue
    finally:
        celery_app.conf.update(saved)
        _delete_queue(queue)


def start_worker_process(
    queue: str,
    name: str,
    log: Path,
    *,
    pool: str = "solo",
    concurrency: int = 1,
    sealing: str = "inline",
    application_name: str = "countersign-worker",
) -> subprocess.Popen[bytes]:
    """`celery worker` in a process of its own, on the test database and queue;
    its connections carry `application_name` in pg_stat_activity."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": f"{url}?application_name={application_name}",
        "CELERY_QUEUE": queue,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "AUDIT_SEALING": sealing,
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", pool, "-Q", queue]
    command += ["--concurrency", str(concurrency)]
    command += ["-n", f"{name}@localhost", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
    with log.open("ab") as output:
        return subprocess.Popen(  # noqa: S603  (our own command line)
            command, cwd=django_settings.BASE_DIR, env=env, stdout=output, stderr=output
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        process.wait(timeout=15)


def test_a_worker_killed_mid_dispatch_is_recovered_by_the_sweep_with_no_second_effect(
    worker_queue, agent, lead, receiver, settings, tmp_path
):
    settings.DISPATCH_GRACE_SECONDS = 1
    receiver.hold_first = True  # the target carries the first call out, then keeps the worker waiting
    action = approved(agent, lead, webhook_type(receiver.url, webhook_timeout_seconds=3))
    first = start_worker_process(worker_queue, "doomed", tmp_path / "worker.log")
    try:
        wait_for(lambda: receiver.requests, timeout=30, what="the first worker to call the target")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.monotonic()
    finally:
        stop(first, signal.SIGKILL)
    assert Action.objects.get(pk=action.pk).status == Status.DISPATCHING  # no outcome was recorded

    second = start_worker_process(worker_queue, "rescuer", tmp_path / "worker.log")
    try:

        def sweep_until_done() -> bool:
            tasks.sweep_dispatches()  # beat's job, once a second here
            time.sleep(1.0)
            return Action.objects.get(pk=action.pk).status == Status.SUCCEEDED

        wait_for(sweep_until_done, timeout=40, what="the sweep to recover the dispatch")
        recovered_in = time.monotonic() - killed_at
    finally:
        stop(second)

    assert recovered_in < 30, (tmp_path / "worker.log").read_text()
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [str(action.pk)] * 2
    assert [r.headers["X-Countersign-Attempt"] for r in receiver.requests] == ["1", "2"]
    assert len(receiver.effects) == 1  # the second call found the first one's effect
    lost, redone = action.executions.order_by("attempt")
    assert (lost.attempt, lost.outcome, lost.error) == (1, ExecutionOutcome.RETRYING, services.LOST)
    assert (redone.attempt, redone.outcome) == (2, ExecutionOutcome.SUCCEEDED)
    assert redone.response == {"status": 200, "body": {"reference": "REF-1", "undo": {"reference": "REF-1"}}}
    assert Action.objects.get(pk=action.pk).agent.status == AgentStatus.ACTIVE
