"""The circuit breaker: the promotion policy's failure_limit failed
dispatches in a row suspend the agent, hold its work, and alert its owner
and its department's leads. A success resets the count; so does a resume."""

from __future__ import annotations

import pytest
from django.core import mail

from agents.models import Agent, AgentStatus
from agents.services import resume_agent
from approvals import services, tasks
from approvals.models import Action, Executor, PromotionPolicy
from approvals.rules.lifecycle import Status
from approvals.services import gateway
from audit.log import Actor
from audit.models import ActorKind, AuditEvent
from tests.support.dispatching import approved, webhook_type
from tests.support.factories import ActionTypeFactory
from tests.support.receivers import Answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunds(receiver):
    return webhook_type(receiver.url)


def fail_dispatches(agent, lead, refunds, receiver, n: int) -> list[Action]:
    """n approved actions whose webhook answers 422 (a permanent failure)."""
    actions = []
    for _ in range(n):
        action = approved(agent, lead, refunds)
        receiver.answer(Answer(422, {"error": "no such order"}))
        tasks.dispatch_action(str(action.pk))
        actions.append(action)
    return actions


def test_it_suspends_an_agent_after_three_failed_dispatches_in_a_row_and_alerts(
    agent, lead, other_lead, owner, refunds, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        fail_dispatches(agent, lead, refunds, receiver, 2)
    agent.refresh_from_db()
    assert (agent.status, agent.failed_dispatches_in_a_row) == (AgentStatus.ACTIVE, 2)

    with django_capture_on_commit_callbacks(execute=True):
        [last] = fail_dispatches(agent, lead, refunds, receiver, 1)

    agent.refresh_from_db()
    assert agent.status == AgentStatus.SUSPENDED
    event = AuditEvent.objects.get(verb="agent.suspended", object_id=str(agent.pk))
    assert (event.actor_kind, event.actor_label) == (ActorKind.SYSTEM, "circuit breaker")
    assert event.after["reason"] == (
        f"Circuit breaker: 3 dispatches in a row failed (the limit is 3); the last was {refunds.slug} {last.pk}."
    )
    assert sorted(message.to[0] for message in mail.outbox) == sorted([owner.email, lead.email, other_lead.email])
    assert all(message.subject == f"Agent suspended: {agent.name} kept failing" for message in mail.outbox)
    assert str(last.pk) in mail.outbox[0].body


def test_a_success_resets_the_count(agent, lead, refunds, receiver):
    fail_dispatches(agent, lead, refunds, receiver, 2)
    tasks.dispatch_action(str(approved(agent, lead, refunds).pk))  # succeeds
    fail_dispatches(agent, lead, refunds, receiver, 2)

    agent.refresh_from_db()
    assert (agent.status, agent.failed_dispatches_in_a_row) == (AgentStatus.ACTIVE, 2)


def test_it_counts_failures_the_agent_reports_and_reports_it_missed(agent, lead):
    executed_by_agent = ActionTypeFactory(executor=Executor.AGENT)
    for _ in range(3):
        action = approved(agent, lead, executed_by_agent)
        services.report_result(action.pk, agent, succeeded=False, detail="card declined")

    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.SUSPENDED


def test_it_uses_the_departments_own_limit(agent, lead, department, refunds, receiver):
    PromotionPolicy.objects.create(department=department, failure_limit=2)
    PromotionPolicy.objects.update_or_create(department=None, defaults={"failure_limit": 5})

    fail_dispatches(agent, lead, refunds, receiver, 2)

    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.SUSPENDED


def test_it_holds_the_suspended_agents_work_and_dispatches_it_after_the_resume(
    agent, lead, refunds, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    fail_dispatches(agent, lead, refunds, receiver, 3)
    held = approved(agent, lead, refunds)  # a lead may still approve; it waits
    assert tasks.dispatch_action(str(held.pk)) is None
    assert Action.objects.get(pk=held.pk).status == Status.APPROVED

    admin = type(lead).objects.create_superuser("root", "root@example.com", "x")
    with django_capture_on_commit_callbacks(execute=True):
        resume_agent(agent, actor=Actor.user(admin), reason="The ERP is fixed.")

    agent.refresh_from_db()
    assert (agent.status, agent.failed_dispatches_in_a_row) == (AgentStatus.ACTIVE, 0)
    assert Action.objects.get(pk=held.pk).status == Status.SUCCEEDED
    resumed = AuditEvent.objects.get(verb="agent.resumed", object_id=str(agent.pk))
    assert resumed.after["reason"] == "The ERP is fixed."


def test_the_gateways_resume_sends_what_the_pause_held_at_once(
    agent, lead, refunds, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    admin = type(lead).objects.create_superuser("root", "root@example.com", "x")
    held = approved(agent, lead, refunds)
    gateway.set_paused(True, user=admin, reason="Incident 42.")
    assert tasks.dispatch_action(str(held.pk)) is None
    assert Action.objects.get(pk=held.pk).status == Status.APPROVED

    with django_capture_on_commit_callbacks(execute=True):
        gateway.set_paused(False, user=admin, reason="Incident 42 is over.")

    assert Action.objects.get(pk=held.pk).status == Status.SUCCEEDED
    assert len(receiver.effects) == 1
