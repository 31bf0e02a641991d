"""Who may decide an action, and how: leads, owners, backups after
escalation, two people for critical actions, edits, reasons, vetoes, and two
leads deciding the same action at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from agents.models import Agent, Tier
from approvals import services
from approvals.models import Action, ActionType, DecisionVerdict, Department, Risk
from approvals.rules.digests import payload_digest
from approvals.rules.lifecycle import IllegalTransition, Status
from approvals.services import DecisionRefused, InvalidPayload
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, DepartmentFactory, GrantFactory, UserFactory

PROPOSED_PAYLOAD = {"note": "refund order 1001", "count": 1}


def _propose(agent: Agent, *, risk: str = Risk.LOW, tier: str = Tier.CONTRIBUTOR, **type_fields: Any) -> Action:
    action_type = ActionTypeFactory(risk=risk, **type_fields)
    GrantFactory(agent=agent, action_type=action_type, tier=tier)
    action, _ = services.propose(
        agent,
        action_type,
        payload=dict(PROPOSED_PAYLOAD),
        reasoning="The parcel never arrived.",
        confidence=Decimal("0.95"),
    )
    return action


def _state(action: Action) -> dict[str, Any]:
    """The action row, its decisions and every audit event, read back."""
    return {
        "row": Action.objects.filter(pk=action.pk).values().get(),
        "decisions": list(action.decisions.values_list("pk", "user_id", "verdict")),
        "audit": list(AuditEvent.objects.order_by("pk").values_list("pk", flat=True)),
    }


def _escalate(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(escalated_at=timezone.now())


# ---------------------------------------------------------------- who may decide


def _lead(d: Department, agent: Agent) -> Any:
    return d.leads.get(username="lena-lead")


def _lead_elsewhere(d: Department, agent: Agent) -> Any:
    return DepartmentFactory(slug="support", name="Support", leads=[UserFactory(username="sam-support")]).leads.get()


def _owner_who_leads(d: Department, agent: Agent) -> Any:
    d.leads.add(agent.owner)
    return agent.owner


def _owner(d: Department, agent: Agent) -> Any:
    return agent.owner


def _backup(d: Department, agent: Agent) -> Any:
    backup = UserFactory(username="bea-backup")
    d.backup_approvers.add(backup)
    return backup


def _backup_elsewhere(d: Department, agent: Agent) -> Any:
    backup = UserFactory(username="bo-backup")
    DepartmentFactory(slug="support", name="Support", backup_approvers=[backup])
    return backup


def _nobody(d: Department, agent: Agent) -> Any:
    return UserFactory(username="nina-nobody")


APPROVED, REJECTED, REFUSED = Status.APPROVED, Status.REJECTED, DecisionRefused

# (who, their role, escalated?, what approving does, what rejecting does)
WHO_MAY_DECIDE: list[tuple[str, Callable[[Department, Agent], Any], bool, Any, Any]] = [
    ("a lead of the department", _lead, False, APPROVED, REJECTED),
    ("a lead of the department, after escalation", _lead, True, APPROVED, REJECTED),
    ("a lead of another department", _lead_elsewhere, False, REFUSED, REFUSED),
    ("a lead of another department, after escalation", _lead_elsewhere, True, REFUSED, REFUSED),
    ("the agent's owner who leads the department", _owner_who_leads, False, REFUSED, REFUSED),
    ("the agent's owner who is no lead", _owner, False, REFUSED, REFUSED),
    ("a backup approver, before escalation", _backup, False, REFUSED, REFUSED),
    ("a backup approver, after escalation", _backup, True, APPROVED, REJECTED),
    ("a backup approver of another department, after escalation", _backup_elsewhere, True, REFUSED, REFUSED),
    ("someone with no role", _nobody, True, REFUSED, REFUSED),
]

DECIDE = {
    "approve": lambda action, user: services.approve(action.pk, user, comment="Looks right."),
    "reject": lambda action, user: services.reject(action.pk, user, reason="Not this customer."),
}


@pytest.mark.parametrize(
    ("verb", "role", "escalated", "outcome"),
    [
        pytest.param(verb, role, escalated, outcome, id=f"{verb} by {who}")
        for who, role, escalated, approving, rejecting in WHO_MAY_DECIDE
        for verb, outcome in (("approve", approving), ("reject", rejecting))
    ],
)
def test_it_lets_only_those_who_may_decide_do_so(agent, department, verb, role, escalated, outcome):
    user = role(department, agent)
    action = _propose(agent)
    if escalated:
        _escalate(action)
    before = _state(action)

    if outcome is REFUSED:
        with pytest.raises(DecisionRefused):
            DECIDE[verb](action, user)
        assert _state(action) == before
        return

    DECIDE[verb](action, user)
    action.refresh_from_db()
    assert action.status == outcome
    decision = action.decisions.get()
    assert decision.user == user
    assert decision.verdict == (DecisionVerdict.APPROVE if verb == "approve" else DecisionVerdict.REJECT)
    event = AuditEvent.objects.for_object(action).get(verb=f"action.{outcome}")
    assert event.actor_id == str(user.pk)


def test_it_tells_the_owner_why_they_may_not_approve(agent, department):
    department.leads.add(agent.owner)
    action = _propose(agent)
    with pytest.raises(DecisionRefused, match="You own this agent"):
        services.approve(action.pk, agent.owner)


# ---------------------------------------------------------------- critical actions: two people


@pytest.fixture
def critical(agent) -> Action:
    action = _propose(agent, risk=Risk.CRITICAL, tier=Tier.EXECUTOR)
    assert action.status == Status.PENDING  # the permanent gate, whatever the tier
    return action


def test_it_keeps_a_critical_action_pending_after_its_first_approval(critical, lead):
    services.approve(critical.pk, lead)

    critical.refresh_from_db()
    assert critical.status == Status.PENDING
    assert critical.decided_at is None
    event = AuditEvent.objects.for_object(critical).get(verb="action.first_approval")
    assert event.after == {"approvals": 1, "required": 2, "payload_digest": payload_digest(PROPOSED_PAYLOAD)}
    assert event.actor_id == str(lead.pk)
    assert not AuditEvent.objects.for_object(critical).filter(verb="action.approved").exists()


def test_it_refuses_the_same_lead_approving_a_critical_action_twice(critical, lead):
    services.approve(critical.pk, lead)
    before = _state(critical)

    with pytest.raises(DecisionRefused, match="another lead"):
        services.approve(critical.pk, lead)

    assert _state(critical) == before


def test_it_approves_a_critical_action_once_a_second_lead_approves(critical, lead, other_lead):
    services.approve(critical.pk, lead)
    services.approve(critical.pk, other_lead, comment="Checked the ledger.")

    critical.refresh_from_db()
    assert critical.status == Status.APPROVED
    assert critical.decided_at is not None
    assert sorted(critical.decisions.values_list("user__username", flat=True)) == ["lena-lead", "omar-lead"]
    approved = AuditEvent.objects.for_object(critical).get(verb="action.approved")
    assert approved.actor_id == str(other_lead.pk)


def test_it_rejects_a_critical_action_on_one_rejection_after_a_first_approval(critical, lead, other_lead):
    services.approve(critical.pk, lead)
    services.reject(critical.pk, other_lead, reason="Too large.")
    critical.refresh_from_db()
    assert critical.status == Status.REJECTED


def test_it_carries_the_first_approvers_edit_to_the_second_approval(critical, lead, other_lead):
    edited = {"note": "refund order 1001, shipping only", "count": 1}
    services.approve(critical.pk, lead, edited_payload=edited)
    critical.refresh_from_db()
    assert critical.effective_payload == edited  # what the second lead sees

    services.approve(critical.pk, other_lead)

    critical.refresh_from_db()
    assert critical.status == Status.APPROVED
    assert critical.approved_payload == edited
    assert critical.payload == PROPOSED_PAYLOAD


def test_it_needs_only_one_approval_below_critical(agent, lead):
    action = _propose(agent, risk=Risk.HIGH)
    services.approve(action.pk, lead)
    action.refresh_from_db()
    assert action.status == Status.APPROVED


# ---------------------------------------------------------------- edit and approve


@pytest.mark.parametrize(
    ("edited", "fields"),
    [
        ({"note": 5}, {"note"}),
        ({"count": -1}, {"count"}),
        ({"note": "ok", "account": "DE89"}, {""}),  # unknown properties: an error of the whole payload
        ({"note": 5, "count": "two"}, {"note", "count"}),
        (["not", "an", "object"], {""}),
    ],
    ids=["wrong type", "under the minimum", "unknown field", "two bad fields", "not an object"],
)
def test_it_refuses_an_edit_that_breaks_the_schema_and_changes_nothing(agent, lead, edited, fields):
    action = _propose(agent)
    before = _state(action)

    with pytest.raises(InvalidPayload) as invalid:
        services.approve(action.pk, lead, edited_payload=edited)

    assert set(invalid.value.errors) == fields
    assert all(messages for messages in invalid.value.errors.values())
    assert _state(action) == before


def test_it_keeps_the_proposal_and_the_edit_apart(agent, lead):
    action = _propose(agent)
    edited = {"note": "refund order 1001, half", "count": 0}

    services.approve(action.pk, lead, edited_payload=edited, comment="Half: they kept one item.")

    action.refresh_from_db()
    assert action.status == Status.APPROVED
    assert action.payload == PROPOSED_PAYLOAD
    assert action.approved_payload == edited
    assert action.effective_payload == edited
    decision = action.decisions.get()
    assert (decision.verdict, decision.edited_payload) == (DecisionVerdict.EDIT_APPROVE, edited)
    assert AuditEvent.objects.for_object(action).get(verb="action.approved").after["approved_payload"] == edited


def test_it_executes_the_proposal_when_nobody_edited_it(agent, lead):
    action = _propose(agent)
    services.approve(action.pk, lead)
    action.refresh_from_db()
    assert action.approved_payload is None
    assert action.effective_payload == PROPOSED_PAYLOAD


# ---------------------------------------------------------------- rejecting needs a reason


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"], ids=["empty", "spaces", "whitespace"])
def test_it_refuses_a_rejection_without_a_reason(agent, lead, reason):
    action = _propose(agent)
    before = _state(action)

    with pytest.raises(DecisionRefused, match="Say why"):
        services.reject(action.pk, lead, reason=reason)

    assert _state(action) == before


def test_it_hands_the_rejection_reason_to_the_decision(agent, lead):
    action = _propose(agent)
    services.reject(action.pk, lead, reason="Refund already issued on 3 May.")
    assert action.decisions.get().comment == "Refund already issued on 3 May."


# ---------------------------------------------------------------- veto in the undo window


@pytest.fixture
def auto_approved(agent) -> Action:
    action = _propose(agent, tier=Tier.EXECUTOR, undo_window_seconds=600)
    assert action.status == Status.APPROVED
    assert action.dispatch_after > timezone.now()
    return action


def test_it_lets_a_lead_veto_inside_the_undo_window(auto_approved, lead):
    services.veto(auto_approved.pk, lead, reason="Wrong customer.")

    auto_approved.refresh_from_db()
    assert auto_approved.status == Status.REJECTED
    decision = auto_approved.decisions.get()
    assert (decision.user, decision.verdict, decision.comment) == (lead, DecisionVerdict.VETO, "Wrong customer.")
    assert AuditEvent.objects.for_object(auto_approved).filter(verb="action.vetoed").count() == 1


def test_it_refuses_a_veto_once_the_undo_window_has_closed(auto_approved, lead):
    Action.objects.filter(pk=auto_approved.pk).update(dispatch_after=timezone.now() - timedelta(seconds=1))
    before = _state(auto_approved)

    with pytest.raises(IllegalTransition, match="undo window"):
        services.veto(auto_approved.pk, lead, reason="Too late.")

    assert _state(auto_approved) == before


def test_it_refuses_a_veto_of_an_action_still_waiting_for_a_decision(agent, lead):
    action = _propose(agent)
    before = _state(action)

    with pytest.raises(IllegalTransition):
        services.veto(action.pk, lead, reason="Use reject.")

    assert _state(action) == before


@pytest.mark.parametrize("role", [_lead_elsewhere, _nobody, _backup], ids=["other lead", "nobody", "backup"])
def test_it_refuses_a_veto_by_someone_who_may_not_decide(auto_approved, department, role):
    user = role(department, auto_approved.agent)
    before = _state(auto_approved)

    with pytest.raises(DecisionRefused):
        services.veto(auto_approved.pk, user, reason="Stop.")

    assert _state(auto_approved) == before


# ---------------------------------------------------------------- two leads at once


@pytest.fixture
def quiet_after_commit():
    """Real commits run after-commit work: keep routing and publishing out of these tests."""
    with mock.patch("approvals.live.publish_action_changed"), mock.patch("approvals.tasks.route_actions.delay"):
        yield


def _at_once(*calls: Callable[[], Any]) -> list[str]:
    """Run the calls in threads released together; each result is "won" or the refusal's class name."""
    start = threading.Barrier(len(calls))
    results: list[str] = [""] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            start.wait()
            call()
            results[index] = "won"
        except (IllegalTransition, DecisionRefused) as refused:
            results[index] = type(refused).__name__
        except Exception as error:  # reported in the assertion, not lost in the thread
            results[index] = repr(error)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def postgresql(transactional_db) -> None:
    if connection.vendor != "postgresql":
        pytest.fail("Deciding at once needs row locks: run this on PostgreSQL (DATABASE_URL).")


@pytest.mark.django_db(transaction=True)
def test_it_lets_exactly_one_of_two_leads_deciding_at_once_win(postgresql, agent, lead, other_lead, quiet_after_commit):
    action_type = ActionTypeFactory(risk=Risk.LOW)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    rounds = 20
    actions = [services.propose(agent, action_type, payload={}, reasoning=f"Race {n}.")[0] for n in range(rounds)]

    for action in actions:
        approved, rejected = _at_once(
            lambda action=action: services.approve(action.pk, lead),
            lambda action=action: services.reject(action.pk, other_lead, reason="No."),
        )
        assert sorted([approved, rejected]) in (["IllegalTransition", "won"], ["DecisionRefused", "won"])
        action.refresh_from_db()
        assert action.status == (Status.APPROVED if approved == "won" else Status.REJECTED)
        assert action.decisions.count() == 1
        decided = AuditEvent.objects.for_object(action).filter(verb__in=["action.approved", "action.rejected"])
        assert decided.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_counts_both_approvals_of_two_leads_approving_a_critical_action_at_once(
    postgresql, agent, lead, other_lead, quiet_after_commit
):
    action_type = ActionTypeFactory(risk=Risk.CRITICAL)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    for n in range(10):
        action, _ = services.propose(agent, action_type, payload={}, reasoning=f"Race {n}.")

        results = _at_once(
            lambda action=action: services.approve(action.pk, lead),
            lambda action=action: services.approve(action.pk, other_lead),
        )

        assert results == ["won", "won"]
        action.refresh_from_db()
        assert action.status == Status.APPROVED
        assert action.decisions.count() == 2
        verbs = AuditEvent.objects.for_object(action).exclude(verb="action.proposed").values_list("verb", flat=True)
        assert sorted(verbs) == ["action.approved", "action.first_approval"]


def test_it_asks_two_approvals_of_critical_action_types_only():
    assert ActionType(risk=Risk.CRITICAL).approvals_required == 2
    assert {ActionType(risk=r).approvals_required for r in (Risk.LOW, Risk.MEDIUM, Risk.HIGH)} == {1}
