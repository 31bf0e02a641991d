"""The sweep (approvals.services.sweep, run by beat every DISPATCH_SWEEP_SECONDS):
what it re-queues, and what it leaves alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent, AgentStatus
from approvals import services, tasks
from approvals.models import Action, Execution, ExecutionOutcome, GatewayState
from approvals.rules.lifecycle import Status
from approvals.services import sweep as sweeper
from tests.support.dispatching import approved, webhook_type

pytestmark = pytest.mark.django_db

GRACE = 5


@pytest.fixture(autouse=True)
def grace(settings) -> None:
    settings.DISPATCH_GRACE_SECONDS = GRACE


@pytest.fixture
def action(agent, lead, receiver) -> Action:
    """Approved, its enqueue lost (the test runs no on-commit hooks)."""
    return approved(agent, lead, webhook_type(receiver.url, webhook_timeout_seconds=10))


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def test_it_requeues_an_approved_action_nobody_claimed_after_the_grace(action):
    Action.objects.filter(pk=action.pk).update(dispatch_after=ago(GRACE - 1))
    assert sweeper.dispatches_to_requeue(timezone.now()) == []

    Action.objects.filter(pk=action.pk).update(dispatch_after=ago(GRACE + 1))
    assert sweeper.dispatches_to_requeue(timezone.now()) == [str(action.pk)]


def test_it_leaves_an_action_in_its_undo_window(action):
    Action.objects.filter(pk=action.pk).update(dispatch_after=timezone.now() + timedelta(minutes=1))

    assert sweeper.dispatches_to_requeue(timezone.now()) == []


@pytest.mark.parametrize("stop", ["suspend the agent", "pause the gateway"])
def test_it_leaves_what_the_kill_switch_holds(action, agent, stop):
    Action.objects.filter(pk=action.pk).update(dispatch_after=ago(60))
    if stop == "suspend the agent":
        Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.SUSPENDED)
    else:
        GatewayState.objects.update_or_create(id=1, defaults={"paused": True})

    assert sweeper.dispatches_to_requeue(timezone.now()) == []


def test_it_requeues_an_attempt_whose_worker_went_silent_past_its_time_out(action):
    attempt = services.start_dispatch(action.pk)
    Execution.objects.filter(pk=attempt.pk).update(started_at=ago(10 + GRACE - 1))
    assert sweeper.dispatches_to_requeue(timezone.now()) == []

    Execution.objects.filter(pk=attempt.pk).update(started_at=ago(10 + GRACE + 1))
    assert sweeper.dispatches_to_requeue(timezone.now()) == [str(action.pk)]


def test_it_requeues_a_retry_whose_message_was_lost(action):
    attempt = services.start_dispatch(action.pk)
    services.retry_later(attempt.pk, error="HTTP 503")
    Execution.objects.filter(pk=attempt.pk).update(retry_at=ago(GRACE - 1))
    assert sweeper.dispatches_to_requeue(timezone.now()) == []

    Execution.objects.filter(pk=attempt.pk).update(retry_at=ago(GRACE + 1))
    assert sweeper.dispatches_to_requeue(timezone.now()) == [str(action.pk)]


def test_it_requeues_a_rollback_whose_message_was_lost(action, lead):
    tasks.dispatch_action(str(action.pk))
    services.request_rollback(action.pk, lead, reason="Refunded twice.")
    Action.objects.filter(pk=action.pk).update(updated_at=ago(GRACE + 1))

    assert sweeper.rollbacks_to_requeue(timezone.now()) == [str(action.pk)]


def test_the_sweep_task_dispatches_what_it_finds(action, receiver, eager_tasks):
    Action.objects.filter(pk=action.pk).update(dispatch_after=ago(GRACE + 1))

    assert tasks.sweep_dispatches() == 1

    assert Action.objects.get(pk=action.pk).status == Status.SUCCEEDED
    assert action.executions.get().outcome == ExecutionOutcome.SUCCEEDED
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [str(action.pk)]
    assert tasks.sweep_dispatches() == 0
