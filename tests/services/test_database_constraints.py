"""The database itself refuses bad rows: every write here skips Python
validation (objects.create, bulk_create, queryset update never call
full_clean), so an IntegrityError can only come from a constraint."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from agents.models import Grant, Tier
from approvals.models import Action, ActionType, Decision, DecisionVerdict, PromotionPolicy, Risk, Verdict
from approvals.rules.lifecycle import Status
from audit.log import Actor, record
from audit.models import AppendOnlyError, AuditEvent
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory


def _action(agent, action_type, **fields: Any) -> Action:
    """A bare action row, written straight to the table (no service, no validation)."""
    values: dict[str, Any] = {
        "agent": agent,
        "action_type": action_type,
        "department_id": agent.department_id,
        "status": Status.PENDING,
        "verdict": Verdict.PENDING,
        "reasoning": "Because.",
        **fields,
    }
    return Action.objects.create(**values)


@pytest.fixture
def action_type(db) -> ActionType:
    return ActionTypeFactory(risk=Risk.LOW)


@pytest.fixture
def action(agent, action_type) -> Action:
    return _action(agent, action_type, idempotency_key="order-1001")


# (what, the constraint that refuses it, the write, the model whose row count must not change)
REFUSED: list[tuple[str, str, Callable[..., Any], type]] = [
    (
        "a second grant of the same action type to the same agent",
        "one_grant_per_agent_and_action_type",
        lambda agent, action_type, action, lead: Grant.objects.create(
            agent=agent, action_type=action_type, tier=Tier.OBSERVER
        ),
        Grant,
    ),
    (
        "a second grant, through bulk_create",
        "one_grant_per_agent_and_action_type",
        lambda agent, action_type, action, lead: Grant.objects.bulk_create(
            [Grant(agent=agent, action_type=action_type, tier=Tier.OBSERVER)]
        ),
        Grant,
    ),
    (
        "an idempotency key the same agent already used",
        "idempotency_key_unique_per_agent",
        lambda agent, action_type, action, lead: _action(agent, action_type, idempotency_key="order-1001"),
        Action,
    ),
    (
        "a grant with a tier that does not exist",
        "grant_tier_valid",
        lambda agent, action_type, action, lead: Grant.objects.create(
            agent=agent, action_type=ActionTypeFactory(), tier="overlord"
        ),
        Grant,
    ),
    (
        "a grant moved to a tier that does not exist",
        "grant_tier_valid",
        lambda agent, action_type, action, lead: Grant.objects.filter(agent=agent).update(tier="overlord"),
        Grant,
    ),
    (
        "an action type with a risk that does not exist",
        "action_type_risk_valid",
        lambda agent, action_type, action, lead: ActionType.objects.create(slug="x.y", name="X", risk="extreme"),
        ActionType,
    ),
    (
        "an action with a status that does not exist",
        "action_status_valid",
        lambda agent, action_type, action, lead: _action(agent, action_type, status="done"),
        Action,
    ),
    (
        "an action moved to a status that does not exist, skipping the services",
        "action_status_valid",
        lambda agent, action_type, action, lead: Action.objects.filter(pk=action.pk).update(status="done"),
        Action,
    ),
    (
        "an action more than certain",
        "action_confidence_0_to_1",
        lambda agent, action_type, action, lead: _action(agent, action_type, confidence=Decimal("1.001")),
        Action,
    ),
    (
        "an action less than unsure",
        "action_confidence_0_to_1",
        lambda agent, action_type, action, lead: Action.objects.filter(pk=action.pk).update(
            confidence=Decimal("-0.001")
        ),
        Action,
    ),
    (
        "a negative amount",
        "action_amount_not_negative",
        lambda agent, action_type, action, lead: _action(agent, action_type, amount=Decimal("-0.01")),
        Action,
    ),
    (
        "a second global promotion policy",
        "one_promotion_policy_per_scope",
        lambda agent, action_type, action, lead: PromotionPolicy.objects.bulk_create(
            [PromotionPolicy(department=None)]
        ),
        PromotionPolicy,
    ),
    (
        "a second decision by the same person on the same action and payload",
        "one_decision_per_user_action_and_payload",
        lambda agent, action_type, action, lead: Decision.objects.create(
            action=action, user=lead, verdict=DecisionVerdict.APPROVE
        ),
        Decision,
    ),
    (
        "a demote threshold above the promote threshold",
        "demote_threshold_not_above_promote",
        lambda agent, action_type, action, lead: PromotionPolicy.objects.create(
            department=DepartmentFactory(), promote_threshold=Decimal("0.900"), demote_threshold=Decimal("0.901")
        ),
        PromotionPolicy,
    ),
    (
        "a demote threshold raised above the promote threshold",
        "demote_threshold_not_above_promote",
        lambda agent, action_type, action, lead: PromotionPolicy.objects.update(demote_threshold=Decimal("0.990")),
        PromotionPolicy,
    ),
]


@pytest.fixture
def existing(agent, action_type, action, lead) -> dict[str, Any]:
    """One of everything the refused writes collide with."""
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    Decision.objects.create(action=action, user=lead, verdict=DecisionVerdict.REJECT, comment="No.")
    PromotionPolicy.objects.create(department=None)
    return {"agent": agent, "action_type": action_type, "action": action, "lead": lead}


@pytest.mark.parametrize(
    ("constraint", "write", "model"),
    [pytest.param(c, w, m, id=what) for what, c, w, m in REFUSED],
)
def test_it_refuses_a_row_that_breaks_a_constraint(existing, constraint, write, model):
    rows = list(model.objects.order_by("pk").values())

    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        write(**existing)

    if connection.vendor == "postgresql":
        # PostgreSQL names the constraint; SQLite only its columns for unique ones.
        assert constraint in str(refused.value)
    assert list(model.objects.order_by("pk").values()) == rows  # the test goes on: nothing was written


def test_it_lets_two_agents_use_the_same_idempotency_key(agent, action_type, action):
    other = AgentFactory(department=agent.department)
    _action(other, action_type, idempotency_key="order-1001")
    assert Action.objects.filter(idempotency_key="order-1001").count() == 2


def test_it_lets_an_agent_propose_many_actions_without_a_key(agent, action_type):
    Action.objects.bulk_create(
        [
            Action(
                agent=agent,
                action_type=action_type,
                department_id=agent.department_id,
                status=Status.PENDING,
                verdict=Verdict.PENDING,
                reasoning="Because.",
                idempotency_key=None,
            )
            for _ in range(3)
        ]
    )
    assert Action.objects.filter(agent=agent, idempotency_key__isnull=True).count() == 3


@pytest.mark.parametrize(
    "fields",
    [
        {"confidence": Decimal(0)},
        {"confidence": Decimal(1)},
        {"amount": Decimal(0)},
        {"confidence": None, "amount": None},
    ],
    ids=["confidence 0", "confidence 1", "amount 0", "neither"],
)
def test_it_accepts_the_edges_of_what_is_valid(agent, action_type, fields):
    assert _action(agent, action_type, **fields).pk


def test_it_lets_each_department_have_its_own_promotion_policy_beside_the_global_one(db):
    PromotionPolicy.objects.create(department=None)
    PromotionPolicy.objects.create(department=DepartmentFactory(), promote_threshold=Decimal("0.9"))
    PromotionPolicy.objects.create(
        department=DepartmentFactory(), promote_threshold=Decimal("0.9"), demote_threshold=Decimal("0.9")
    )
    assert PromotionPolicy.objects.count() == 3


def test_it_lets_two_people_decide_the_same_action(action, lead, other_lead):
    Decision.objects.create(action=action, user=lead, verdict=DecisionVerdict.APPROVE)
    Decision.objects.create(action=action, user=other_lead, verdict=DecisionVerdict.APPROVE)
    assert action.decisions.count() == 2


# ---------------------------------------------------------------- the audit trail is append-only


@pytest.fixture
def event(db) -> AuditEvent:
    user = UserFactory()
    return record("user.noticed", user, actor=Actor.system("tests"), after={"status": "seen"})


def _change_in_memory(event: AuditEvent) -> None:
    event.verb = "user.forgotten"
    event.save()


APPEND_ONLY = {
    "saving a changed event": _change_in_memory,
    "saving only some fields": lambda e: e.save(update_fields=["after"]),
    "deleting an event": lambda e: e.delete(),
    "updating through a queryset": lambda e: AuditEvent.objects.filter(pk=e.pk).update(verb="user.forgotten"),
    "updating every event": lambda e: AuditEvent.objects.update(after=None),
    "deleting through a queryset": lambda e: AuditEvent.objects.filter(pk=e.pk).delete(),
    "deleting every event": lambda e: AuditEvent.objects.all().delete(),
}


@pytest.mark.parametrize("change", APPEND_ONLY.values(), ids=APPEND_ONLY.keys())
def test_it_refuses_to_change_or_remove_an_audit_event(event, change):
    stored = AuditEvent.objects.filter(pk=event.pk).values().get()

    with pytest.raises(AppendOnlyError):
        change(event)

    assert AuditEvent.objects.filter(pk=event.pk).values().get() == stored


def test_it_still_appends_audit_events(event):
    record("user.noticed", event, actor=Actor.system("tests"))
    assert AuditEvent.objects.count() == 2


# ---------------------------------------------------------------- the queue's index


QUEUE_COLUMNS = ["department_id", "status", "created_at"]


def test_it_declares_an_index_for_the_department_queue():
    assert any(index.fields == ["department", "status", "created_at"] for index in Action._meta.indexes)


def test_it_has_the_queue_index_in_the_database(db):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Action._meta.db_table)
    queue = [c for c in constraints.values() if c["index"] and c["columns"] == QUEUE_COLUMNS]
    assert queue, f"no index on {QUEUE_COLUMNS} among {sorted(constraints)}"
    assert not queue[0]["unique"]
