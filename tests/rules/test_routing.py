"""Routing a waiting action: the department whose queue it joins, how urgent
it is, when its SLA runs out, the push to that department's live queue as the
proposal commits, and the routing task that records it and tells the leads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import DatabaseError

from agents.models import Agent, Tier
from approvals import services, tasks
from approvals.models import Action, ActionType, Risk
from approvals.rules import routing
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, DepartmentFactory, GrantFactory

pytestmark = pytest.mark.usefixtures("eager_tasks")

Propose = Callable[..., Action]


@pytest.fixture
def published() -> Iterator[mock.MagicMock]:
    """Pushes to the leads' screens: a new action's and any later change's."""
    with (
        mock.patch("approvals.live.publish_action_proposed") as publish,
        mock.patch("approvals.live.publish_action_changed", publish),
    ):
        yield publish


@pytest.fixture
def propose_and_route(agent: Agent, django_capture_on_commit_callbacks: Any) -> Propose:
    """Propose through the service layer and commit, which routes the action:
    propose_and_route(action_type=None, amount=None, risk=..., tier=...) -> the routed Action."""

    def _propose(
        action_type: ActionType | None = None,
        *,
        amount: str | None = None,
        risk: str = Risk.LOW,
        tier: str = Tier.CONTRIBUTOR,
    ) -> Action:
        action_type = action_type or ActionTypeFactory(risk=risk, money=amount is not None)
        GrantFactory(agent=agent, action_type=action_type, tier=tier)
        payload: dict[str, Any] = {"note": "refund order 1001"}
        if amount is not None:
            payload["amount"] = float(amount)
        with django_capture_on_commit_callbacks(execute=True):
            action, _ = services.propose(
                agent,
                action_type,
                payload=payload,
                reasoning="The parcel never arrived.",
                confidence=Decimal("0.95"),
                amount=None if amount is None else Decimal(amount),
            )
        action.refresh_from_db()
        return action

    return _propose


def _queue(*actions: Action) -> list[Action]:
    return list(Action.objects.filter(pk__in=[a.pk for a in actions]).order_by("-priority"))


# ---------------------------------------------------------------- the department


def test_it_routes_to_the_action_types_department_when_it_names_one(propose_and_route, department, published):
    legal = DepartmentFactory(slug="legal", name="Legal", decision_sla_minutes=30)

    action = propose_and_route(ActionTypeFactory(routing_department=legal))

    assert action.department == legal
    assert action.sla_deadline == action.created_at + timedelta(minutes=30)
    published.assert_called_once_with(action.pk, legal.pk, Status.PENDING)
    routed = AuditEvent.objects.for_object(action).get(verb="action.routed")
    assert routed.after["department"] == "legal"
    assert routed.department_id == legal.pk


def test_it_routes_to_the_agents_department_when_the_action_type_names_none(
    propose_and_route, agent, department, published
):
    action = propose_and_route(ActionTypeFactory(routing_department=None))

    assert action.department == agent.department == department
    assert action.sla_deadline == action.created_at + department.decision_sla
    published.assert_called_once_with(action.pk, department.pk, Status.PENDING)


# ---------------------------------------------------------------- priority


def test_it_ranks_a_higher_risk_above_any_amount_of_a_lower_one(propose_and_route, published):
    biggest = "999999999999.99"  # the largest amount an action can carry
    low = propose_and_route(risk=Risk.LOW, amount=biggest)
    medium = propose_and_route(risk=Risk.MEDIUM, amount=None)
    high = propose_and_route(risk=Risk.HIGH, amount=biggest)
    critical = propose_and_route(risk=Risk.CRITICAL, amount="1.00")

    assert _queue(low, medium, high, critical) == [critical, high, medium, low]
    assert critical.priority > high.priority > medium.priority > low.priority


def test_it_ranks_larger_amounts_first_within_a_risk(propose_and_route, published):
    none = propose_and_route(risk=Risk.HIGH, amount=None)
    small = propose_and_route(risk=Risk.HIGH, amount="5.00")
    medium = propose_and_route(risk=Risk.HIGH, amount="900.00")
    large = propose_and_route(risk=Risk.HIGH, amount="10000.00")

    assert _queue(none, small, medium, large) == [large, medium, small, none]


@pytest.mark.parametrize(
    ("risk", "amount", "expected"),
    [
        (Risk.LOW, None, 0),
        (Risk.LOW, Decimal("0"), 0),
        (Risk.MEDIUM, Decimal("250.00"), 123),  # int(log10(251) * 10) = 23
        (Risk.HIGH, Decimal("10000.00"), 240),
        (Risk.CRITICAL, Decimal("999999999999.99"), 399),  # the amount's share stops below one risk step
    ],
)
def test_it_weighs_risk_then_the_amounts_order_of_magnitude(risk, amount, expected):
    assert routing.priority(risk, amount) == expected


# ---------------------------------------------------------------- the SLA deadline


def test_it_runs_the_sla_from_the_proposal_not_from_the_routing(agent, department, published):
    department.decision_sla_minutes = 90
    department.save()
    action_type = ActionTypeFactory()
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(agent, action_type, payload={}, reasoning="Asked for.")
    Action.objects.filter(pk=action.pk).update(routed_at=None)  # the worker was slow to pick it up

    tasks.route_action(str(action.pk))

    action.refresh_from_db()
    assert action.sla_deadline == action.created_at + timedelta(minutes=90)
    assert action.routed_at > action.created_at


def test_it_pushes_the_row_as_the_proposal_commits_before_any_routing_task(
    agent, department, published, django_capture_on_commit_callbacks
):
    action_type = ActionTypeFactory(risk=Risk.HIGH, money=True)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    with mock.patch("approvals.tasks.route_actions.delay") as route, django_capture_on_commit_callbacks(execute=True):
        action, _ = services.propose(
            agent, action_type, payload={"amount": 900}, reasoning="Asked for.", amount=Decimal("900")
        )

    published.assert_called_once_with(action.pk, department.pk, Status.PENDING)
    route.assert_called_once_with([str(action.pk)])
    action.refresh_from_db()
    assert action.priority == routing.priority(Risk.HIGH, Decimal("900"))
    assert action.routed_at is None  # the row was on screen before the task ran


# ---------------------------------------------------------------- once, and only while waiting


def test_it_routes_an_action_once_however_often_the_task_runs(
    propose_and_route, published, mailoutbox, django_capture_on_commit_callbacks
):
    action = propose_and_route(risk=Risk.MEDIUM, amount="250.00")
    emails = len(mailoutbox)
    assert emails == 2  # one per lead of the department

    with django_capture_on_commit_callbacks(execute=True):
        tasks.route_action(str(action.pk))  # a redelivered message

    assert AuditEvent.objects.for_object(action).filter(verb="action.routed").count() == 1
    assert Action.objects.get(pk=action.pk).routed_at == action.routed_at
    assert len(mailoutbox) == emails  # the leads are not told twice
    assert published.call_count == 1  # the proposal's own push


def test_a_burst_routes_each_of_its_actions_though_one_fails(agent, published, caplog):
    action_type = ActionTypeFactory()
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    first, second = (services.propose(agent, action_type, payload={}, reasoning="Asked for.")[0] for _ in range(2))
    route = services.route

    def locked_out(action_id: str) -> Action | None:
        if action_id == str(first.pk):
            raise DatabaseError("canceling statement due to lock timeout")
        return route(action_id)

    with mock.patch("approvals.services.route", locked_out):
        tasks.route_actions([str(first.pk), str(second.pk)])

    assert Action.objects.get(pk=first.pk).routed_at is None  # left to the sweep
    assert Action.objects.get(pk=second.pk).routed_at is not None
    assert f"Routing action {first.pk} failed" in caplog.text


def test_it_routes_a_shadowed_action_too(propose_and_route, department, published):
    action = propose_and_route(tier=Tier.OBSERVER)

    assert action.status == Status.SHADOWED
    assert action.sla_deadline is not None
    published.assert_called_once_with(action.pk, department.pk, Status.SHADOWED)


def test_it_leaves_an_action_decided_before_its_routing_alone(
    agent, lead, published, mailoutbox, django_capture_on_commit_callbacks
):
    action_type = ActionTypeFactory()
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(agent, action_type, payload={}, reasoning="Asked for.")
    services.approve(action.pk, lead)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        tasks.route_action(str(action.pk))

    action.refresh_from_db()
    assert action.routed_at is None
    assert not AuditEvent.objects.for_object(action).filter(verb="action.routed").exists()
    assert callbacks == []
    assert mailoutbox == []


def test_it_returns_quietly_when_the_action_is_gone(db, published):
    tasks.route_action("00000000-0000-0000-0000-000000000000")

    published.assert_not_called()
