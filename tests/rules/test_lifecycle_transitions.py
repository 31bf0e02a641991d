"""Every move of the action lifecycle: the table itself, then each allowed and
each refused move driven through approvals.services, then the live update
each move publishes after commit (and only then)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import connection, transaction
from django.utils import timezone

from agents.models import Agent, AgentStatus, Tier
from approvals import services, tasks
from approvals.models import (
    Action,
    DecisionVerdict,
    Execution,
    ExecutionKind,
    ExecutionOutcome,
    Executor,
    GatewayState,
    Risk,
    Verdict,
)
from approvals.rules.lifecycle import ALLOWED, INITIAL, TERMINAL, IllegalTransition, Status, can_move, check_move
from approvals.services import DecisionRefused
from audit.models import ActorKind, AuditEvent
from tests.support.factories import ActionTypeFactory, AgentFactory, GrantFactory

S = Status

# The lifecycle of DESIGN.md, written out once more by hand so that a change
# to approvals.rules.lifecycle.ALLOWED has to be made twice, on purpose. Beyond the
# diagram's arrows: an agent-executed action goes from approved straight to
# succeeded or failed when its agent reports, a lead's veto in the undo window
# takes approved to rejected, and a rollback that fails leaves the action
# succeeded.
EXPECTED_MOVES = {
    (S.PENDING, S.APPROVED),
    (S.PENDING, S.REJECTED),
    (S.PENDING, S.EXPIRED),
    (S.PENDING, S.CANCELLED),
    (S.APPROVED, S.DISPATCHING),
    (S.APPROVED, S.SUCCEEDED),
    (S.APPROVED, S.FAILED),
    (S.APPROVED, S.REJECTED),
    (S.DISPATCHING, S.SUCCEEDED),
    (S.DISPATCHING, S.FAILED),
    (S.SUCCEEDED, S.ROLLBACK_REQUESTED),
    (S.ROLLBACK_REQUESTED, S.ROLLED_BACK),
    (S.ROLLBACK_REQUESTED, S.SUCCEEDED),
}


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize("target", list(Status))
@pytest.mark.parametrize("current", list(Status))
def test_it_allows_exactly_the_moves_of_the_lifecycle(current, target):
    allowed = (current, target) in EXPECTED_MOVES
    assert can_move(current, target) is allowed
    assert (target in ALLOWED.get(current, frozenset())) is allowed
    if allowed:
        check_move(current, target)
    else:
        with pytest.raises(IllegalTransition) as refused:
            check_move(current, target)
        assert (refused.value.current, refused.value.target) == (current, target)


def test_it_names_both_ends_of_a_refused_move():
    with pytest.raises(IllegalTransition, match="An action that is rolled back cannot become approved"):
        check_move(S.ROLLED_BACK, S.APPROVED)


def test_it_knows_where_proposals_start_and_where_actions_end():
    assert {S.BLOCKED, S.SHADOWED, S.PENDING, S.APPROVED} == INITIAL
    assert {S.BLOCKED, S.SHADOWED, S.REJECTED, S.EXPIRED, S.CANCELLED, S.FAILED, S.ROLLED_BACK} == TERMINAL
    assert all(not ALLOWED.get(status) for status in TERMINAL)


# ---------------------------------------------------------------- driving actions through the services


@dataclass
class World:
    agent: Agent
    lead: Any
    other_lead: Any


@pytest.fixture
def world(agent, lead, other_lead) -> World:
    return World(agent=agent, lead=lead, other_lead=other_lead)


def _proposed(w: World, *, tier: str | None = Tier.CONTRIBUTOR, **type_fields: Any) -> Action:
    """A new action type, a grant at `tier` (none if None), and one proposal of it."""
    action_type = ActionTypeFactory(**type_fields)
    if tier is not None:
        GrantFactory(agent=w.agent, action_type=action_type, tier=tier)
    action, created = services.propose(
        w.agent,
        action_type,
        payload={"note": "refund order 1001"},
        reasoning="The parcel never arrived.",
        confidence=Decimal("0.95"),
    )
    assert created
    return action


def _approved(w: World) -> Action:
    action = _proposed(w)
    services.approve(action.pk, w.lead)
    return action


def _dispatched(w: World, *, succeeded: bool) -> Action:
    action = _approved(w)
    execution = services.start_dispatch(action.pk)
    assert execution is not None
    services.finish_dispatch(execution.pk, succeeded=succeeded, response={"status": 200 if succeeded else 422})
    return action


def _rollback_requested(w: World) -> Action:
    action = _dispatched(w, succeeded=True)
    services.request_rollback(action.pk, w.lead, reason="Refunded twice.")
    return action


def _then(build: Callable[[World], Action], move: Callable[[World, Action], Any]) -> Callable[[World], Action]:
    def built(w: World) -> Action:
        action = build(w)
        move(w, action)
        return action

    return built


# name -> (how to get an action there through the services, the status it has there)
STATES: dict[str, tuple[Callable[[World], Action], str]] = {
    "blocked": (lambda w: _proposed(w, tier=None), S.BLOCKED),
    "shadowed": (lambda w: _proposed(w, tier=Tier.OBSERVER), S.SHADOWED),
    "pending": (_proposed, S.PENDING),
    # Approved by a lead: dispatchable at once.
    "approved": (_approved, S.APPROVED),
    # Approved by the policy: waits out its undo window, a lead may veto.
    "approved in its undo window": (
        lambda w: _proposed(w, tier=Tier.EXECUTOR, undo_window_seconds=600),
        S.APPROVED,
    ),
    "rejected": (_then(_proposed, lambda w, a: services.reject(a.pk, w.lead, reason="No.")), S.REJECTED),
    "expired": (_then(_proposed, lambda w, a: services.expire(a.pk)), S.EXPIRED),
    "cancelled": (_then(_proposed, lambda w, a: services.cancel(a.pk, w.agent)), S.CANCELLED),
    "dispatching": (_then(_approved, lambda w, a: services.start_dispatch(a.pk)), S.DISPATCHING),
    "succeeded": (lambda w: _dispatched(w, succeeded=True), S.SUCCEEDED),
    "failed": (lambda w: _dispatched(w, succeeded=False), S.FAILED),
    "rollback_requested": (_rollback_requested, S.ROLLBACK_REQUESTED),
    "rolled_back": (
        _then(_rollback_requested, lambda w, a: services.finish_rollback(a.pk, succeeded=True)),
        S.ROLLED_BACK,
    ),
}


def _dispatch_execution(action: Action) -> Execution:
    """The action's latest dispatch attempt; a stray running one if it has none,
    so a refused finish_dispatch has something to name."""
    execution = action.executions.filter(kind=ExecutionKind.DISPATCH).order_by("attempt").last()
    return execution or Execution.objects.create(action=action, kind=ExecutionKind.DISPATCH, attempt=1)


OPS: dict[str, Callable[[World, Action], Any]] = {
    "approve": lambda w, a: services.approve(a.pk, w.lead, comment="Fine."),
    "reject": lambda w, a: services.reject(a.pk, w.lead, reason="Wrong customer."),
    "veto": lambda w, a: services.veto(a.pk, w.lead, reason="Wrong customer."),
    "cancel": lambda w, a: services.cancel(a.pk, w.agent),
    "expire": lambda w, a: services.expire(a.pk),
    "start_dispatch": lambda w, a: services.start_dispatch(a.pk),
    "finish_dispatch(succeeded)": lambda w, a: services.finish_dispatch(
        _dispatch_execution(a).pk, succeeded=True, response={"refund": "r-1"}, undo={"refund": "r-1"}
    ),
    "finish_dispatch(failed)": lambda w, a: services.finish_dispatch(
        _dispatch_execution(a).pk, succeeded=False, response={"status": 422}, error="HTTP 422"
    ),
    "report_result(succeeded)": lambda w, a: services.report_result(
        a.pk, w.agent, succeeded=True, detail={"refund": "r-1"}
    ),
    "report_result(failed)": lambda w, a: services.report_result(a.pk, w.agent, succeeded=False, detail="card expired"),
    "request_rollback": lambda w, a: services.request_rollback(a.pk, w.lead, reason="Refunded twice."),
    "finish_rollback(succeeded)": lambda w, a: services.finish_rollback(a.pk, succeeded=True, response={"ok": True}),
    "finish_rollback(failed)": lambda w, a: services.finish_rollback(a.pk, succeeded=False, error="HTTP 500"),
}


@dataclass(frozen=True)
class Move:
    start: str
    op: str
    target: str
    verb: str
    actor: str
    decision: str | None = None  # the verdict of the one Decision this move adds
    execution: tuple[str, str] | None = None  # (kind, outcome) of the execution it adds or finishes
    decides: bool = False  # sets decided_at


MOVES = [
    Move("pending", "approve", S.APPROVED, "action.approved", ActorKind.USER, DecisionVerdict.APPROVE, decides=True),
    Move("pending", "reject", S.REJECTED, "action.rejected", ActorKind.USER, DecisionVerdict.REJECT, decides=True),
    Move("pending", "expire", S.EXPIRED, "action.expired", ActorKind.SYSTEM),
    Move("pending", "cancel", S.CANCELLED, "action.cancelled", ActorKind.AGENT),
    Move(
        "approved",
        "start_dispatch",
        S.DISPATCHING,
        "action.dispatch_started",
        ActorKind.SYSTEM,
        execution=(ExecutionKind.DISPATCH, ExecutionOutcome.RUNNING),
    ),
    Move(
        "approved",
        "report_result(succeeded)",
        S.SUCCEEDED,
        "action.result_reported",
        ActorKind.AGENT,
        execution=(ExecutionKind.DISPATCH, ExecutionOutcome.SUCCEEDED),
    ),
    Move(
        "approved",
        "report_result(failed)",
        S.FAILED,
        "action.result_reported",
        ActorKind.AGENT,
        execution=(ExecutionKind.DISPATCH, ExecutionOutcome.FAILED),
    ),
    # An agent's report inside the undo window is refused: the lead's veto would be moot.
    Move(
        "approved in its undo window",
        "veto",
        S.REJECTED,
        "action.vetoed",
        ActorKind.USER,
        DecisionVerdict.VETO,
        decides=True,
    ),
    Move(
        "dispatching",
        "finish_dispatch(succeeded)",
        S.SUCCEEDED,
        "action.dispatch_succeeded",
        ActorKind.SYSTEM,
        execution=(ExecutionKind.DISPATCH, ExecutionOutcome.SUCCEEDED),
    ),
    Move(
        "dispatching",
        "finish_dispatch(failed)",
        S.FAILED,
        "action.dispatch_failed",
        ActorKind.SYSTEM,
        execution=(ExecutionKind.DISPATCH, ExecutionOutcome.FAILED),
    ),
    # Agent-executed: the rollback is handed to the agent, an attempt running until it reports.
    Move(
        "succeeded",
        "request_rollback",
        S.ROLLBACK_REQUESTED,
        "action.rollback_requested",
        ActorKind.USER,
        execution=(ExecutionKind.ROLLBACK, ExecutionOutcome.RUNNING),
    ),
    Move(
        "rollback_requested",
        "finish_rollback(succeeded)",
        S.ROLLED_BACK,
        "action.rolled_back",
        ActorKind.SYSTEM,
        execution=(ExecutionKind.ROLLBACK, ExecutionOutcome.SUCCEEDED),
    ),
    Move(
        "rollback_requested",
        "finish_rollback(failed)",
        S.SUCCEEDED,
        "action.rollback_failed",
        ActorKind.SYSTEM,
        execution=(ExecutionKind.ROLLBACK, ExecutionOutcome.FAILED),
    ),
]

# Not refused, not done: the dispatcher leaves an action in its undo window alone (and returns None).
NOT_YET = {("approved in its undo window", "start_dispatch")}

REFUSED = [
    (state, op)
    for state in STATES
    for op in OPS
    if (state, op) not in {(m.start, m.op) for m in MOVES} and (state, op) not in NOT_YET
]


def _build(w: World, state: str) -> Action:
    build, status = STATES[state]
    action = build(w)
    action.refresh_from_db()
    assert action.status == status, f"could not drive an action to {state}"
    return action


def _snapshot(action: Action) -> dict[str, Any]:
    """Everything a move could touch, read back from the database."""
    row = Action.objects.get(pk=action.pk)
    return {
        "row": {
            f.attname: getattr(row, f.attname)
            for f in Action._meta.concrete_fields
            if f.attname not in ("priority", "sla_deadline")  # routing's, not the lifecycle's
        },
        "audit": list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True)),
        "decisions": list(row.decisions.values_list("pk", "user_id", "verdict")),
        "executions": list(
            row.executions.order_by("pk").values_list("pk", "kind", "attempt", "outcome", "finished_at", "error")
        ),
    }


def test_it_has_a_way_through_the_services_to_every_status():
    assert {status for _, status in STATES.values()} == set(Status.values)


def test_it_has_a_service_move_for_every_allowed_move_and_no_other():
    covered = {(STATES[m.start][1], m.target) for m in MOVES}
    assert covered == EXPECTED_MOVES
    assert len(REFUSED) == len(STATES) * len(OPS) - len(MOVES) - len(NOT_YET)


@pytest.fixture
def published():
    """Pushes to the leads' screens: a new action's and any later change's."""
    with (
        mock.patch("approvals.live.publish_action_proposed") as publish,
        mock.patch("approvals.live.publish_action_changed", publish),
    ):
        yield publish


@pytest.mark.parametrize("move", MOVES, ids=lambda m: f"{m.start} -{m.op}-> {m.target}")
def test_it_makes_every_allowed_move_through_the_services(world, move, published, django_capture_on_commit_callbacks):
    action = _build(world, move.start)
    before = _snapshot(action)

    with django_capture_on_commit_callbacks(execute=True):
        OPS[move.op](world, action)

    after = _snapshot(action)
    row = Action.objects.get(pk=action.pk)
    assert row.status == move.target
    assert row.updated_at > before["row"]["updated_at"]

    new_events = AuditEvent.objects.exclude(pk__in=before["audit"])
    assert [e.verb for e in new_events] == [move.verb]
    event = new_events.get()
    assert (event.object_type, event.object_id) == ("approvals.action", str(action.pk))
    assert event.before == {"status": STATES[move.start][1]}
    assert event.after["status"] == move.target
    assert event.actor_kind == move.actor
    assert (event.department_id, event.agent_id) == (row.department_id, row.agent_id)

    new_decisions = row.decisions.exclude(pk__in=[d[0] for d in before["decisions"]])
    assert [d.verdict for d in new_decisions] == ([move.decision] if move.decision else [])
    if move.decision:
        assert new_decisions.get().user == world.lead

    if move.decides:
        assert row.decided_at is not None
        assert row.decided_at > before["row"]["updated_at"]
        assert event.after["decided_at"] == str(row.decided_at)
    else:
        assert row.decided_at == before["row"]["decided_at"]

    if move.execution:
        latest = row.executions.order_by("pk").last()
        assert (latest.kind, latest.outcome) == move.execution
        assert (latest.finished_at is None) == (move.execution[1] == ExecutionOutcome.RUNNING)
    else:
        assert after["executions"] == before["executions"]

    published.assert_called_once_with(action.pk, row.department_id, move.target)


@pytest.mark.parametrize(("state", "op"), REFUSED, ids=[f"{op} on {state}" for state, op in REFUSED])
def test_it_refuses_every_other_move_and_changes_nothing(
    world, state, op, published, django_capture_on_commit_callbacks
):
    action = _build(world, state)
    if op.startswith("finish_dispatch"):
        _dispatch_execution(action)  # before the snapshot: a stray or stale attempt to finish
    before = _snapshot(action)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        if op == "start_dispatch":
            assert OPS[op](world, action) is None  # the dispatcher's "not ready", not an error
        else:
            with pytest.raises(IllegalTransition):
                OPS[op](world, action)

    assert _snapshot(action) == before
    assert callbacks == []
    published.assert_not_called()


def test_it_does_not_dispatch_an_action_inside_its_undo_window(world):
    assert {("approved in its undo window", "start_dispatch")} == NOT_YET
    action = _build(world, "approved in its undo window")
    before = _snapshot(action)
    assert before["row"]["dispatch_after"] > before["row"]["decided_at"]

    assert services.start_dispatch(action.pk) is None

    assert _snapshot(action) == before


@pytest.mark.parametrize("state", list(STATES))
def test_it_takes_shadow_marks_on_shadowed_actions_only(world, state, published, django_capture_on_commit_callbacks):
    action = _build(world, state)
    before = _snapshot(action)

    with django_capture_on_commit_callbacks(execute=True):
        if state == "shadowed":
            decision = services.mark_shadow(action.pk, world.lead, would_approve=False, comment="Wrong order.")
        else:
            with pytest.raises(DecisionRefused):
                services.mark_shadow(action.pk, world.lead, would_approve=True)

    if state != "shadowed":
        assert _snapshot(action) == before
        return
    after = _snapshot(action)
    assert after["row"] == before["row"]  # evidence for the trust record, not a move
    assert decision.verdict == DecisionVerdict.WOULD_REJECT
    assert [e.verb for e in AuditEvent.objects.exclude(pk__in=before["audit"])] == ["action.shadow_marked"]
    published.assert_not_called()


# ---------------------------------------------------------------- refusals that are about who and when


def test_it_refuses_a_rollback_of_an_irreversible_action(world):
    action = _proposed(world, reversible=False)
    services.approve(action.pk, world.lead)
    services.report_result(action.pk, world.agent, succeeded=True)
    before = _snapshot(action)

    with pytest.raises(DecisionRefused, match="not reversible"):
        services.request_rollback(action.pk, world.lead, reason="Oops.")

    assert _snapshot(action) == before


def test_it_refuses_a_rollback_after_the_reversal_window(world):
    action = _dispatched(world, succeeded=True)
    # The window runs from the dispatch's success, not from the row's last change.
    Execution.objects.filter(action=action).update(finished_at=timezone.now() - timedelta(days=1))
    Action.objects.filter(pk=action.pk).update(updated_at=timezone.now())
    before = _snapshot(action)

    with pytest.raises(DecisionRefused, match="reversal window"):
        services.request_rollback(action.pk, world.lead, reason="Oops.")

    assert _snapshot(action) == before


def test_it_refuses_a_rollback_asked_by_someone_who_may_not_decide(world):
    action = _dispatched(world, succeeded=True)
    before = _snapshot(action)

    with pytest.raises(DecisionRefused):
        services.request_rollback(action.pk, world.agent.owner, reason="Oops.")

    assert _snapshot(action) == before


@pytest.mark.parametrize("op", ["cancel", "report_result(succeeded)"])
def test_it_hides_an_action_from_an_agent_that_did_not_propose_it(world, op):
    action = _approved(world) if op.startswith("report") else _proposed(world)
    before = _snapshot(action)
    stranger = World(agent=AgentFactory(department=world.agent.department), lead=world.lead, other_lead=None)

    with pytest.raises(Action.DoesNotExist):
        OPS[op](stranger, action)

    assert _snapshot(action) == before


def test_it_refuses_a_result_report_for_an_action_the_gateway_dispatches(world):
    action = _proposed(world, executor=Executor.WEBHOOK, webhook_url="https://erp.example.com/hooks/refund")
    services.approve(action.pk, world.lead)
    before = _snapshot(action)

    with pytest.raises(IllegalTransition):
        services.report_result(action.pk, world.agent, succeeded=True)

    assert _snapshot(action) == before


def test_it_holds_an_approved_action_while_the_agent_is_suspended_or_the_gateway_paused(world):
    action = _approved(world)
    before = _snapshot(action)

    Agent.objects.filter(pk=world.agent.pk).update(status=AgentStatus.SUSPENDED)
    assert services.start_dispatch(action.pk) is None
    Agent.objects.filter(pk=world.agent.pk).update(status=AgentStatus.ACTIVE)
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True})
    assert services.start_dispatch(action.pk) is None

    assert _snapshot(action) == before
    GatewayState.objects.filter(id=1).update(paused=False)
    assert services.start_dispatch(action.pk) is not None


def test_it_counts_dispatch_attempts_separately_from_rollbacks(world):
    action = _rollback_requested(world)
    services.finish_rollback(action.pk, succeeded=False, error="HTTP 500")
    services.request_rollback(action.pk, world.lead, reason="Try again.")
    services.finish_rollback(action.pk, succeeded=True)

    attempts = list(action.executions.order_by("pk").values_list("kind", "attempt", "outcome"))
    assert attempts == [
        (ExecutionKind.DISPATCH, 1, ExecutionOutcome.SUCCEEDED),
        (ExecutionKind.ROLLBACK, 1, ExecutionOutcome.FAILED),
        (ExecutionKind.ROLLBACK, 2, ExecutionOutcome.SUCCEEDED),
    ]


def test_it_keeps_the_rollback_reason_in_the_audit_trail(world):
    action = _dispatched(world, succeeded=True)
    services.request_rollback(action.pk, world.lead, reason="Refunded twice.")
    event = AuditEvent.objects.for_object(action).filter(verb="action.rollback_requested").get()
    assert event.after["reason"] == "Refunded twice."


# ---------------------------------------------------------------- where a proposal starts


def _suspended(w: World) -> None:
    Agent.objects.filter(pk=w.agent.pk).update(status=AgentStatus.SUSPENDED)
    w.agent.refresh_from_db()


def _paused(w: World) -> None:
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True})


# (what, setup, tier, risk, grant limits, amount, confidence, status, code)
PROPOSALS = [
    ("no grant", None, None, Risk.LOW, {}, "10", "0.95", S.BLOCKED, "not_granted"),
    ("a suspended agent", _suspended, Tier.EXECUTOR, Risk.LOW, {}, "10", "0.95", S.BLOCKED, "agent_suspended"),
    ("a paused gateway", _paused, Tier.EXECUTOR, Risk.LOW, {}, "10", "0.95", S.BLOCKED, "gateway_paused"),
    ("over a hard limit", None, Tier.EXECUTOR, Risk.LOW, {"max_amount_per_action": Decimal(5)}, "10", "0.95",
     S.BLOCKED, "limit_exceeded"),
    ("an observer", None, Tier.OBSERVER, Risk.LOW, {}, "10", "0.95", S.SHADOWED, "observer"),
    ("a contributor", None, Tier.CONTRIBUTOR, Risk.LOW, {}, "10", "0.95", S.PENDING, "contributor"),
    ("an executor at high risk", None, Tier.EXECUTOR, Risk.HIGH, {}, "10", "0.95", S.PENDING, "permanent_gate"),
    ("an executor at critical risk", None, Tier.EXECUTOR, Risk.CRITICAL, {}, "10", "0.95", S.PENDING,
     "permanent_gate"),
    ("an executor unsure of itself", None, Tier.EXECUTOR, Risk.LOW, {}, "10", "0.5", S.PENDING, "needs_review"),
    ("an executor over its auto-approve amount", None, Tier.EXECUTOR, Risk.MEDIUM,
     {"auto_approve_max_amount": Decimal(5)}, "10", "0.95", S.PENDING, "needs_review"),
    ("an executor within its limits", None, Tier.EXECUTOR, Risk.MEDIUM,
     {"max_amount_per_action": Decimal(10), "auto_approve_max_amount": Decimal(10)}, "10", "0.95", S.APPROVED,
     "executor"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "tier", "risk", "limits", "amount", "confidence", "status", "code"),
    [pytest.param(*row[1:], id=row[0]) for row in PROPOSALS],
)
def test_it_starts_a_proposal_where_the_policy_says(
    world, setup, tier, risk, limits, amount, confidence, status, code, published, django_capture_on_commit_callbacks
):
    if setup:
        setup(world)
    action_type = ActionTypeFactory(risk=risk, money=True)
    if tier:
        GrantFactory(agent=world.agent, action_type=action_type, tier=tier, **limits)
    audit_before = AuditEvent.objects.count()

    with (
        mock.patch("approvals.tasks.route_actions.delay", side_effect=tasks.route_actions),
        django_capture_on_commit_callbacks(execute=True),
    ):
        action, created = services.propose(
            world.agent,
            action_type,
            payload={"note": "hi", "amount": float(amount)},
            reasoning="Asked for.",
            amount=Decimal(amount),
            confidence=Decimal(confidence),
        )

    assert created
    action.refresh_from_db()
    assert (action.status, action.verdict, action.verdict_code) == (status, status, code)
    assert action.verdict_reason
    assert (action.decided_at is not None) == (status == S.APPROVED)
    assert (action.expires_at is not None) == (status == S.PENDING)
    assert (action.dispatch_after is not None) == (status == S.APPROVED)
    proposed = AuditEvent.objects.for_object(action).get(verb="action.proposed")
    assert proposed.actor_kind == ActorKind.AGENT
    assert proposed.after["status"] == status
    assert proposed.after["code"] == code
    # Waiting actions are routed first (their own audit event), then published.
    routed = ["action.routed"] if status in (S.PENDING, S.SHADOWED) else []
    assert AuditEvent.objects.count() == audit_before + 1 + len(routed)
    assert list(AuditEvent.objects.for_object(action).filter(verb="action.routed").values_list("verb", flat=True)) == (
        routed
    )
    published.assert_called_once_with(action.pk, action.department_id, status)


def test_it_covers_every_starting_status_and_verdict():
    assert {row[7] for row in PROPOSALS} == INITIAL
    assert {row[7] for row in PROPOSALS} == set(Verdict.values)


def test_it_gives_a_policy_approval_an_undo_window_when_the_action_is_reversible(world):
    action = _proposed(world, tier=Tier.EXECUTOR, undo_window_seconds=600)
    assert (action.dispatch_after - action.decided_at).total_seconds() == 600
    instant = _proposed(world, tier=Tier.EXECUTOR, undo_window_seconds=0)
    assert instant.dispatch_after == instant.decided_at


# ---------------------------------------------------------------- the live update, after commit only


def test_it_publishes_a_move_only_once_the_transaction_commits(world, published, django_capture_on_commit_callbacks):
    action = _proposed(world)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.approve(action.pk, world.lead)
        published.assert_not_called()  # still inside the transaction

    assert callbacks
    published.assert_called_once_with(action.pk, action.department_id, S.APPROVED)


def test_it_publishes_nothing_when_a_move_is_refused(world, published, django_capture_on_commit_callbacks):
    action = _build(world, "rejected")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(IllegalTransition):
        services.approve(action.pk, world.lead)

    assert callbacks == []
    published.assert_not_called()


def test_it_publishes_nothing_when_the_surrounding_transaction_rolls_back(
    world, published, django_capture_on_commit_callbacks
):
    action = _proposed(world)
    before = _snapshot(action)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.approve(action.pk, world.lead)
        services.start_dispatch(action.pk)
        raise RuntimeError("the caller failed after the moves")

    assert callbacks == []
    published.assert_not_called()
    assert _snapshot(action) == before


# ---------------------------------------------------------------- daily limits under concurrent proposals


@pytest.fixture
def postgresql(transactional_db) -> None:
    if connection.vendor != "postgresql":
        pytest.fail("Proposing at once needs row locks: run this on PostgreSQL (DATABASE_URL).")


@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_daily_limit_when_an_agent_proposes_twice_at_once(postgresql, agent):
    """Two requests of one agent race for the last slot of the day: one gets it."""
    rounds, outcomes = 10, []
    with mock.patch("approvals.live.publish_action_changed"), mock.patch("approvals.tasks.route_actions.delay"):
        for _ in range(rounds):
            action_type = ActionTypeFactory(risk=Risk.LOW)
            GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR, max_actions_per_day=1)
            start = threading.Barrier(2)
            statuses: list[str] = []

            def propose(action_type=action_type, start=start, statuses=statuses) -> None:
                try:
                    start.wait()
                    action, _ = services.propose(agent, action_type, payload={}, reasoning="Race.")
                    statuses.append(action.status)
                finally:
                    connection.close()

            threads = [threading.Thread(target=propose) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            outcomes.append(sorted(statuses))

    assert outcomes == [[S.BLOCKED, S.PENDING]] * rounds
