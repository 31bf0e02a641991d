"""Rolling back a succeeded action: the webhook executor calls the target's
rollback URL with the stored undo object, signed the same way; an
agent-executed action's agent sees rollback_requested and reports."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Tier
from approvals import services, tasks
from approvals.models import Action, ActionType, ExecutionKind, ExecutionOutcome, Executor, GatewayState
from approvals.rules.lifecycle import Status
from approvals.services import sweep as sweeper
from audit.models import ActorKind, AuditEvent
from tests.api.test_api_keys import api_client, post_json
from tests.support.dispatching import approved, proposed, webhook_type
from tests.support.factories import ActionTypeFactory
from tests.support.receivers import Answer, Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_backoff(settings) -> None:
    settings.DISPATCH_RETRY_BASE_SECONDS = 0


def succeeded(agent, lead, receiver: Receiver) -> Action:
    action = approved(agent, lead, webhook_type(receiver.url))
    tasks.dispatch_action(str(action.pk))
    action.refresh_from_db()
    assert action.status == Status.SUCCEEDED
    return action


def rollbacks(action: Action) -> list[tuple[int, str]]:
    return list(
        action.executions.filter(kind=ExecutionKind.ROLLBACK).order_by("attempt").values_list("attempt", "outcome")
    )


def verbs(action: Action) -> list[str]:
    return list(AuditEvent.objects.for_object(action).order_by("pk").values_list("verb", flat=True))


# ---------------------------------------------------------------- webhook


def test_it_calls_the_rollback_url_with_the_undo_object(
    agent, lead, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    action = succeeded(agent, lead, receiver)

    with django_capture_on_commit_callbacks(execute=True):
        services.request_rollback(action.pk, lead, reason="Refunded twice.")

    action.refresh_from_db()
    assert action.status == Status.ROLLED_BACK
    _, rollback = receiver.requests
    assert rollback.path == "/hooks/refund/rollback/"
    assert rollback.signature_valid
    assert rollback.headers["Idempotency-Key"] == f"{action.pk}:rollback"
    assert rollback.json() == {
        "event": "rollback",
        "id": str(action.pk),
        "action_type": action.action_type.slug,
        "agent": agent.slug,
        "undo": {"reference": "REF-1"},  # what the dispatch answered
    }
    assert rollbacks(action) == [(1, ExecutionOutcome.SUCCEEDED)]
    assert verbs(action)[-3:] == ["action.rollback_requested", "action.rollback_started", "action.rolled_back"]


def test_it_retries_a_rollback_that_met_a_5xx(agent, lead, receiver):
    action = succeeded(agent, lead, receiver)
    services.request_rollback(action.pk, lead, reason="Refunded twice.")
    receiver.answer(Answer(503))

    tasks.roll_back_action(str(action.pk))
    assert Action.objects.get(pk=action.pk).status == Status.ROLLBACK_REQUESTED
    tasks.roll_back_action(str(action.pk))

    assert Action.objects.get(pk=action.pk).status == Status.ROLLED_BACK
    assert rollbacks(action) == [(1, ExecutionOutcome.RETRYING), (2, ExecutionOutcome.SUCCEEDED)]
    assert {r.headers["Idempotency-Key"] for r in receiver.requests[1:]} == {f"{action.pk}:rollback"}


def test_it_leaves_the_action_in_effect_when_the_target_refuses_the_rollback(agent, lead, receiver):
    action = succeeded(agent, lead, receiver)
    services.request_rollback(action.pk, lead, reason="Refunded twice.")
    receiver.answer(Answer(409, {"error": "already shipped"}))

    tasks.roll_back_action(str(action.pk))

    assert Action.objects.get(pk=action.pk).status == Status.SUCCEEDED
    assert verbs(action)[-1] == "action.rollback_failed"
    # A lead may try again: a new round of attempts.
    services.request_rollback(action.pk, lead, reason="Try again.")
    tasks.roll_back_action(str(action.pk))
    assert Action.objects.get(pk=action.pk).status == Status.ROLLED_BACK
    assert rollbacks(action) == [(1, ExecutionOutcome.FAILED), (2, ExecutionOutcome.SUCCEEDED)]


def test_a_rollback_with_nowhere_to_go_fails_and_leaves_the_action_in_effect(agent, lead, receiver):
    action = succeeded(agent, lead, receiver)
    ActionType.objects.filter(pk=action.action_type_id).update(rollback_url="")
    services.request_rollback(action.pk, lead, reason="Refunded twice.")

    tasks.roll_back_action(str(action.pk))

    assert Action.objects.get(pk=action.pk).status == Status.SUCCEEDED
    failed = action.executions.get(kind=ExecutionKind.ROLLBACK)
    assert (failed.outcome, failed.error) == (ExecutionOutcome.FAILED, "This action type has no rollback URL.")


def test_it_rolls_back_even_while_the_gateway_is_paused(agent, lead, receiver):
    """The kill switch stops effects from starting; undoing one is not held."""
    action = succeeded(agent, lead, receiver)
    services.request_rollback(action.pk, lead, reason="Refunded twice.")
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True})

    tasks.roll_back_action(str(action.pk))

    assert Action.objects.get(pk=action.pk).status == Status.ROLLED_BACK


# ---------------------------------------------------------------- agent-executed


@pytest.fixture
def agent_executed(agent, lead) -> Action:
    action = approved(agent, lead, ActionTypeFactory(executor=Executor.AGENT))
    services.report_result(action.pk, agent, succeeded=True, detail={"refund": "R-1"}, undo={"refund": "R-1"})
    return action


def test_an_agent_sees_the_rollback_request_and_reports_it_done(agent, lead, agent_executed):
    client = api_client(agent)
    services.request_rollback(agent_executed.pk, lead, reason="Refunded twice.")

    seen = client.get(f"/api/v1/actions/{agent_executed.pk}/").json()
    assert seen["status"] == "rollback_requested"
    assert [(e["kind"], e["outcome"]) for e in seen["executions"]][-1] == ("rollback", "running")

    answer = post_json(
        client,
        f"/api/v1/actions/{agent_executed.pk}/result/",
        {"kind": "rollback", "outcome": "succeeded", "detail": {"refund": "R-1 reversed"}},
    )

    assert answer.status_code == 200, answer.json()
    assert answer.json()["status"] == "rolled_back"
    assert rollbacks(agent_executed) == [(1, ExecutionOutcome.SUCCEEDED)]
    event = AuditEvent.objects.for_object(agent_executed).get(verb="action.rolled_back")
    assert event.actor_kind == ActorKind.AGENT


def test_an_agent_reports_a_failed_rollback(agent, lead, agent_executed):
    services.request_rollback(agent_executed.pk, lead, reason="Refunded twice.")

    answer = post_json(
        api_client(agent),
        f"/api/v1/actions/{agent_executed.pk}/result/",
        {"kind": "rollback", "outcome": "failed", "detail": "the refund has been paid out"},
    )

    assert answer.json()["status"] == "succeeded"
    execution = agent_executed.executions.get(kind=ExecutionKind.ROLLBACK)
    assert (execution.outcome, execution.error) == (ExecutionOutcome.FAILED, "the refund has been paid out")


def test_a_rollback_report_is_refused_when_no_rollback_was_asked(agent, agent_executed):
    answer = post_json(
        api_client(agent), f"/api/v1/actions/{agent_executed.pk}/result/", {"kind": "rollback", "outcome": "succeeded"}
    )

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "invalid_state"
    assert Action.objects.get(pk=agent_executed.pk).status == Status.SUCCEEDED


def test_a_repeated_dispatch_report_is_never_taken_for_a_rollback(agent, lead, agent_executed):
    services.request_rollback(agent_executed.pk, lead, reason="Refunded twice.")

    answer = post_json(api_client(agent), f"/api/v1/actions/{agent_executed.pk}/result/", {"outcome": "succeeded"})

    assert answer.status_code == 409
    assert Action.objects.get(pk=agent_executed.pk).status == Status.ROLLBACK_REQUESTED


def test_an_agent_report_inside_the_undo_window_is_refused(agent):
    action_type = ActionTypeFactory(executor=Executor.AGENT, undo_window_seconds=600)
    action = proposed(agent, action_type, tier=Tier.EXECUTOR)
    assert action.status == Status.APPROVED

    answer = post_json(api_client(agent), f"/api/v1/actions/{action.pk}/result/", {"outcome": "succeeded"})

    assert answer.status_code == 409
    assert "undo window" in answer.json()["error"]["message"]
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED


def test_the_sweep_fails_an_agent_executed_action_nobody_reported(agent, lead):
    action = approved(agent, lead, ActionTypeFactory(executor=Executor.AGENT, report_timeout_minutes=30))
    Action.objects.filter(pk=action.pk).update(dispatch_after=timezone.now() - timedelta(minutes=29))
    assert sweeper.time_out_reports(timezone.now()) == 0

    Action.objects.filter(pk=action.pk).update(dispatch_after=timezone.now() - timedelta(minutes=31))
    assert sweeper.time_out_reports(timezone.now()) == 1

    action.refresh_from_db()
    assert action.status == Status.FAILED
    execution = action.executions.get()
    assert execution.error == "The agent reported no result within 30 minutes."
    assert verbs(action)[-1] == "action.result_timed_out"


def test_the_sweep_ends_a_rollback_the_agent_never_reported(agent, lead, agent_executed):
    services.request_rollback(agent_executed.pk, lead, reason="Refunded twice.")
    running = agent_executed.executions.get(kind=ExecutionKind.ROLLBACK)
    running.started_at = timezone.now() - timedelta(minutes=61)
    running.save(update_fields=["started_at"])

    assert sweeper.time_out_reports(timezone.now()) == 1

    assert Action.objects.get(pk=agent_executed.pk).status == Status.SUCCEEDED
    assert rollbacks(agent_executed) == [(1, ExecutionOutcome.FAILED)]
    assert verbs(agent_executed)[-1] == "action.rollback_timed_out"
