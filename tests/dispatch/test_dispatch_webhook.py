"""The signed-webhook executor against a real HTTP receiver on loopback:
success, a 4xx, a 5xx then success, retries running out, a time-out, a
target nobody listens on. The dispatch task is called in this process, one
attempt per call, as a worker would run it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent, AgentStatus
from approvals import services, tasks
from approvals.dispatch import executors
from approvals.models import Action, Execution, ExecutionKind, ExecutionOutcome, GatewayState
from approvals.rules.digests import payload_digest
from approvals.rules.lifecycle import IllegalTransition, Status
from audit.models import AuditEvent
from tests.support.dispatching import approved, webhook_type
from tests.support.receivers import Answer
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_backoff(settings) -> None:
    """Retries are due at once, so a test makes the next attempt by calling the task again."""
    settings.DISPATCH_RETRY_BASE_SECONDS = 0


def attempts(action: Action) -> list[tuple[int, str]]:
    return list(
        action.executions.filter(kind=ExecutionKind.DISPATCH).order_by("attempt").values_list("attempt", "outcome")
    )


def verbs(action: Action) -> list[str]:
    return list(AuditEvent.objects.for_object(action).order_by("pk").values_list("verb", flat=True))


def test_it_posts_the_approved_action_signed_and_keeps_the_answer_and_its_undo(agent, lead, receiver):
    action = approved(agent, lead, webhook_type(receiver.url), note="refund order 1002 instead")

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.SUCCEEDED

    action.refresh_from_db()
    assert action.status == Status.SUCCEEDED
    [request] = receiver.requests
    assert request.path == "/hooks/refund/"
    assert request.signature_valid
    assert request.headers["Idempotency-Key"] == str(action.pk)
    assert request.headers["X-Countersign-Attempt"] == "1"
    sent = {"note": "refund order 1002 instead", "amount": 25.0}  # the lead's edit, not the proposal
    assert request.headers["X-Countersign-Payload-Digest"] == payload_digest(sent)
    assert request.json() == {
        "event": "dispatch",
        "id": str(action.pk),
        "action_type": action.action_type.slug,
        "payload": sent,
        "payload_digest": payload_digest(sent),
        "amount": "25.00",
        "currency": "EUR",
        "agent": agent.slug,
        "approved_by": [lead.username],
        "approved_at": action.decided_at.isoformat(),
    }
    execution = action.executions.get()
    assert (execution.outcome, execution.attempt) == (ExecutionOutcome.SUCCEEDED, 1)
    assert execution.response == {"status": 201, "body": {"reference": "REF-1", "undo": {"reference": "REF-1"}}}
    assert execution.undo == {"reference": "REF-1"}
    assert verbs(action)[-2:] == ["action.dispatch_started", "action.dispatch_succeeded"]


def test_it_fails_at_once_on_a_4xx(agent, lead, receiver):
    action = approved(agent, lead, webhook_type(receiver.url))
    receiver.answer(Answer(422, {"error": "order 1001 is already refunded"}))

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.FAILED

    action.refresh_from_db()
    assert action.status == Status.FAILED
    assert len(receiver.requests) == 1
    execution = action.executions.get()
    assert execution.error == f"HTTP 422 from {action.action_type.webhook_url}"
    assert execution.response == {"status": 422, "body": {"error": "order 1001 is already refunded"}}
    # Nothing is left to retry.
    assert tasks.dispatch_action(str(action.pk)) is None
    assert len(receiver.requests) == 1


def test_it_retries_a_5xx_with_the_same_idempotency_key_and_then_succeeds(agent, lead, receiver):
    action = approved(agent, lead, webhook_type(receiver.url))
    receiver.answer(Answer(503, {"error": "maintenance"}))

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.RETRY
    action.refresh_from_db()
    assert action.status == Status.DISPATCHING
    first = action.executions.get()
    assert (first.outcome, first.error) == (
        ExecutionOutcome.RETRYING,
        f"HTTP 503 from {action.action_type.webhook_url}",
    )
    assert first.retry_at is not None

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.SUCCEEDED

    action.refresh_from_db()
    assert action.status == Status.SUCCEEDED
    assert attempts(action) == [(1, ExecutionOutcome.RETRYING), (2, ExecutionOutcome.SUCCEEDED)]
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [str(action.pk)] * 2
    assert [r.headers["X-Countersign-Attempt"] for r in receiver.requests] == ["1", "2"]
    assert receiver.requests[0].body == receiver.requests[1].body
    assert "action.dispatch_retry_scheduled" in verbs(action)
    assert "action.dispatch_retried" in verbs(action)


def test_it_waits_for_a_retry_to_be_due(agent, lead, receiver, settings):
    settings.DISPATCH_RETRY_BASE_SECONDS = 60
    action = approved(agent, lead, webhook_type(receiver.url))
    receiver.answer(Answer(500))

    tasks.dispatch_action(str(action.pk))
    retry_at = action.executions.get().retry_at
    assert timedelta(seconds=59) < retry_at - timezone.now() <= timedelta(seconds=60)

    assert tasks.dispatch_action(str(action.pk)) is None  # not yet
    assert len(receiver.requests) == 1


def test_it_fails_once_the_attempts_run_out(agent, lead, receiver):
    action = approved(agent, lead, webhook_type(receiver.url, max_attempts=3))
    receiver.answer(Answer(500), Answer(502), Answer(503))

    outcomes = [tasks.dispatch_action(str(action.pk)) for _ in range(4)]

    assert outcomes == [executors.Outcome.RETRY, executors.Outcome.RETRY, executors.Outcome.RETRY, None]
    action.refresh_from_db()
    assert action.status == Status.FAILED
    assert attempts(action) == [
        (1, ExecutionOutcome.RETRYING),
        (2, ExecutionOutcome.RETRYING),
        (3, ExecutionOutcome.FAILED),
    ]
    assert "No attempts left (3)" in action.executions.get(attempt=3).error
    assert len(receiver.requests) == 3


def test_it_backs_off_exponentially_up_to_a_cap(settings):
    settings.DISPATCH_RETRY_BASE_SECONDS, settings.DISPATCH_RETRY_MAX_SECONDS = 2, 20
    assert [executors.retry_delay(n).total_seconds() for n in range(1, 6)] == [2, 4, 8, 16, 20]


def test_it_retries_a_time_out(agent, lead, receiver):
    action = approved(agent, lead, webhook_type(receiver.url, webhook_timeout_seconds=1))
    receiver.answer(Answer(200, delay=2.5))

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.RETRY

    execution = Action.objects.get(pk=action.pk).executions.get()
    assert execution.outcome == ExecutionOutcome.RETRYING
    assert execution.error.startswith("No answer within 1 s")
    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.SUCCEEDED


def test_it_retries_when_nobody_listens(agent, lead):
    nobody = f"http://127.0.0.1:{free_port()}"
    action = approved(agent, lead, webhook_type(nobody))

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.RETRY

    assert action.executions.get().error.startswith(f"Could not reach {nobody}/hooks/refund/")


def test_it_does_not_follow_redirects(agent, lead, receiver):
    action = approved(agent, lead, webhook_type(receiver.url))
    receiver.answer(Answer(302))

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.FAILED


def test_it_leaves_an_action_in_its_undo_window_alone(agent, lead, receiver):
    action = approved(agent, lead, webhook_type(receiver.url))
    Action.objects.filter(pk=action.pk).update(dispatch_after=timezone.now() + timedelta(minutes=5))

    assert tasks.dispatch_action(str(action.pk)) is None

    assert Action.objects.get(pk=action.pk).status == Status.APPROVED
    assert receiver.requests == []


@pytest.mark.parametrize("stop", ["suspend the agent", "pause the gateway"])
def test_it_holds_every_attempt_while_the_kill_switch_is_on(agent, lead, receiver, stop):
    first = approved(agent, lead, webhook_type(receiver.url))
    retrying = approved(agent, lead, first.action_type)
    receiver.answer(Answer(503))
    tasks.dispatch_action(str(retrying.pk))
    assert len(receiver.requests) == 1

    if stop == "suspend the agent":
        Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.SUSPENDED)
    else:
        GatewayState.objects.update_or_create(id=1, defaults={"paused": True})

    assert tasks.dispatch_action(str(first.pk)) is None  # not started
    assert tasks.dispatch_action(str(retrying.pk)) is None  # its retry not started either
    assert len(receiver.requests) == 1
    assert Execution.objects.filter(action=first).count() == 0


def test_it_drops_the_result_of_an_attempt_that_was_superseded(agent, lead, receiver):
    """An attempt taken for lost (its worker silent past its time-out) is
    replaced; when it reports after all, its result is not recorded."""
    action = approved(agent, lead, webhook_type(receiver.url))
    lost = services.start_dispatch(action.pk)
    assert services.retry_dispatch(action.pk) is None  # still within its time-out: not lost
    Execution.objects.filter(pk=lost.pk).update(started_at=timezone.now() - timedelta(minutes=1))
    replacement = services.retry_dispatch(action.pk)

    with pytest.raises(IllegalTransition, match="over or was superseded"):
        services.finish_dispatch(lost.pk, succeeded=False, error="late")
    services.finish_dispatch(replacement.pk, succeeded=True)

    assert Action.objects.get(pk=action.pk).status == Status.SUCCEEDED
    assert attempts(action) == [(1, ExecutionOutcome.RETRYING), (2, ExecutionOutcome.SUCCEEDED)]
    assert action.executions.get(attempt=1).error == services.LOST
