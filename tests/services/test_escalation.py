"""Escalation: a pending action past its SLA deadline goes to the
department's backup approvers, flagged, audited and pushed live, once; an
action not yet overdue, or no longer waiting, is left alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone

from agents.models import Agent, Tier
from approvals import live, services, tasks
from approvals.models import Action, Department
from approvals.rules.lifecycle import Status
from approvals.services import DecisionRefused
from audit.models import ActorKind, AuditEvent
from tests.support.factories import ActionTypeFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.usefixtures("eager_tasks")


@pytest.fixture
def published() -> Iterator[mock.MagicMock]:
    with mock.patch("approvals.live.publish_action_changed") as publish:
        yield publish


@pytest.fixture
def backup(department: Department) -> Any:
    user = UserFactory(username="bea-backup")
    department.backup_approvers.add(user)
    return user


def _waiting(
    agent: Agent, *, tier: str = Tier.CONTRIBUTOR, overdue_by: timedelta | None = timedelta(minutes=1)
) -> Action:
    """A proposal routed by hand, its SLA deadline `overdue_by` ago (None: not routed)."""
    action_type = ActionTypeFactory()
    GrantFactory(agent=agent, action_type=action_type, tier=tier)
    action, _ = services.propose(agent, action_type, payload={"note": "refund"}, reasoning="Asked for.")
    if overdue_by is not None:
        Action.objects.filter(pk=action.pk).update(sla_deadline=timezone.now() - overdue_by)
    action.refresh_from_db()
    return action


def _escalations(action: Action) -> list[AuditEvent]:
    return list(AuditEvent.objects.for_object(action).filter(verb="action.escalated"))


# ---------------------------------------------------------------- what escalates, once


def test_it_escalates_an_overdue_pending_action_once(agent, backup, published, django_capture_on_commit_callbacks):
    action = _waiting(agent, overdue_by=timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        first = tasks.escalate_overdue_actions()
    with django_capture_on_commit_callbacks(execute=True):
        second = tasks.escalate_overdue_actions()

    assert (first, second) == (1, 0)
    action.refresh_from_db()
    assert action.escalated_at is not None
    assert action.status == Status.PENDING  # a flag, not a move
    [event] = _escalations(action)
    assert (event.actor_kind, event.actor_label) == (ActorKind.SYSTEM, "escalation")
    assert event.before == {"escalated_at": None}
    assert event.after == {
        "escalated_at": action.escalated_at.isoformat(),
        "sla_deadline": action.sla_deadline.isoformat(),
        "backup_approvers": ["bea-backup"],
    }
    assert event.department_id == action.department_id
    published.assert_called_once_with(action.pk, action.department_id, Status.PENDING)


def test_it_answers_none_when_asked_to_escalate_twice(agent, published):
    action = _waiting(agent)

    assert services.escalate(action.pk) is not None
    assert services.escalate(action.pk) is None
    assert len(_escalations(action)) == 1


@pytest.mark.parametrize(
    "overdue_by",
    [pytest.param(-timedelta(minutes=1), id="deadline ahead"), pytest.param(None, id="not routed yet")],
)
def test_it_leaves_an_action_alone_until_its_sla_deadline_passes(agent, published, overdue_by):
    action = _waiting(agent, overdue_by=overdue_by)
    before = Action.objects.filter(pk=action.pk).values().get()

    assert tasks.escalate_overdue_actions() == 0
    assert services.escalate(action.pk) is None

    assert Action.objects.filter(pk=action.pk).values().get() == before
    assert _escalations(action) == []


def _approved(action: Action, lead: Any) -> None:
    services.approve(action.pk, lead)


def _rejected(action: Action, lead: Any) -> None:
    services.reject(action.pk, lead, reason="Not this one.")


def _cancelled(action: Action, lead: Any) -> None:
    services.cancel(action.pk, action.agent)


def _expired(action: Action, lead: Any) -> None:
    services.expire(action.pk)


@pytest.mark.parametrize("decide", [_approved, _rejected, _cancelled, _expired], ids=lambda f: f.__name__[1:])
def test_it_leaves_an_action_that_no_longer_waits_alone(agent, lead, published, decide):
    action = _waiting(agent)
    decide(action, lead)
    before = Action.objects.filter(pk=action.pk).values().get()

    assert tasks.escalate_overdue_actions() == 0

    assert Action.objects.filter(pk=action.pk).values().get() == before
    assert _escalations(action) == []


def test_it_never_escalates_a_shadowed_action(agent, published):
    action = _waiting(agent, tier=Tier.OBSERVER)
    assert action.status == Status.SHADOWED

    assert tasks.escalate_overdue_actions() == 0

    action.refresh_from_db()
    assert action.escalated_at is None


def test_it_escalates_every_overdue_action_batch_by_batch(agent, published, monkeypatch):
    monkeypatch.setattr(tasks, "ESCALATION_BATCH", 2)
    overdue = [_waiting(agent, overdue_by=timedelta(minutes=n + 1)) for n in range(5)]
    fresh = _waiting(agent, overdue_by=-timedelta(hours=1))

    assert tasks.escalate_overdue_actions() == 5

    assert Action.objects.filter(pk__in=[a.pk for a in overdue], escalated_at__isnull=False).count() == 5
    assert Action.objects.get(pk=fresh.pk).escalated_at is None


# ---------------------------------------------------------------- who may decide


def test_it_lets_a_backup_approver_decide_only_once_the_action_escalated(agent, backup, published):
    action = _waiting(agent)

    with pytest.raises(DecisionRefused):
        services.approve(action.pk, backup)
    with pytest.raises(DecisionRefused):
        services.reject(action.pk, backup, reason="Too much.")
    assert Action.objects.get(pk=action.pk).status == Status.PENDING

    services.escalate(action.pk)
    services.approve(action.pk, backup)

    assert Action.objects.get(pk=action.pk).status == Status.APPROVED


def test_it_keeps_the_leads_able_to_decide_after_escalation(agent, lead, backup, published):
    action = _waiting(agent)
    services.escalate(action.pk)

    services.reject(action.pk, lead, reason="Not this one.")

    assert Action.objects.get(pk=action.pk).status == Status.REJECTED


# ---------------------------------------------------------------- the live push, after commit


def test_it_publishes_the_escalation_only_once_it_commits(agent, published, django_capture_on_commit_callbacks):
    action = _waiting(agent)

    with django_capture_on_commit_callbacks(execute=True):
        services.escalate(action.pk)
        published.assert_not_called()  # still inside the transaction

    published.assert_called_once_with(action.pk, action.department_id, Status.PENDING)


async def _receive(layer: Any, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), timeout=5)


def test_it_pushes_the_escalation_to_the_department_and_the_action_groups(agent, django_capture_on_commit_callbacks):
    """Through the configured channel layer (Redis under ./test), as the queue
    consumer and the agent's long poll would hear it."""
    action = _waiting(agent)
    layer = get_channel_layer()
    listeners = {}
    for group in (live.department_group(action.department_id), live.action_group(action.pk)):
        listeners[group] = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group, listeners[group])

    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.escalate(action.pk)

        expected = {
            "type": "action.changed",
            "action_id": str(action.pk),
            "department_id": action.department_id,
            "status": "pending",
        }
        heard = [async_to_sync(_receive)(layer, channel) for channel in listeners.values()]
        assert heard == [expected, expected]
    finally:
        for group, channel in listeners.items():
            async_to_sync(layer.group_discard)(group, channel)


# ---------------------------------------------------------------- two runs at once


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            start.wait()
            results[index] = call()
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


@pytest.mark.django_db(transaction=True)
def test_it_escalates_each_action_once_when_two_runs_overlap(agent, published):
    if connection.vendor != "postgresql":
        pytest.fail("Escalating at once needs row locks: run this on PostgreSQL (DATABASE_URL).")
    with mock.patch("approvals.tasks.route_actions.delay"), mock.patch("approvals.tasks.notify_escalation.delay"):
        actions = [_waiting(agent) for _ in range(20)]

        counts = _at_once([tasks.escalate_overdue_actions, tasks.escalate_overdue_actions])

    assert sum(counts) == 20, counts
    for action in actions:
        assert len(_escalations(action)) == 1


def test_it_runs_escalation_every_minute_on_the_beat_schedule(settings):
    from config.celery import app

    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].endswith(".escalate_overdue_actions")]
    assert entry["schedule"] == timedelta(minutes=1)
    assert app.tasks[entry["task"]].name == tasks.escalate_overdue_actions.name
