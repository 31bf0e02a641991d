"""Agents in the admin: a status change needs a reason and goes through
agents.services; other edits are recorded as agent.changed."""

from __future__ import annotations

import pytest

from agents.models import Agent, AgentKey, AgentStatus, Grant, Tier
from agents.services import issue_key
from audit.log import Actor
from audit.models import AuditEvent
from tests.admin.test_admin_pages import admin_url, changeform_data
from tests.support.factories import ActionTypeFactory


def save_agent(client, agent: Agent, **changes):
    url = admin_url(Agent, "change", agent.pk)
    return client.post(url, changeform_data(client.get(url), **changes))


def test_it_asks_why_when_the_status_changes(admin_client, agent):
    response = save_agent(admin_client, agent, status=AgentStatus.SUSPENDED)
    assert response.status_code == 200
    assert "status_reason" in response.context["adminform"].form.errors
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    assert not AuditEvent.objects.filter(verb__startswith="agent.").exists()


def test_it_suspends_through_the_service_with_the_reason(admin_client, admin_user, agent):
    response = save_agent(admin_client, agent, status=AgentStatus.SUSPENDED, status_reason="Refunds look wrong.")
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.status == AgentStatus.SUSPENDED
    event = AuditEvent.objects.get(verb="agent.suspended")
    assert event.after == {"status": "suspended", "reason": "Refunds look wrong."}
    assert (event.actor_label, event.agent_id) == (admin_user.username, agent.pk)
    assert not AuditEvent.objects.filter(verb="agent.changed").exists()


def test_it_resumes_through_the_service(admin_client, agent):
    agent.status = AgentStatus.SUSPENDED
    agent.save()
    save_agent(admin_client, agent, status=AgentStatus.ACTIVE, status_reason="Fixed in 1.1.")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    assert AuditEvent.objects.get(verb="agent.resumed").after["reason"] == "Fixed in 1.1."


def test_it_retires_an_agent_with_the_reason(admin_client, agent):
    save_agent(admin_client, agent, status=AgentStatus.RETIRED, status_reason="Replaced by refund-bot-2.")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.RETIRED
    event = AuditEvent.objects.get(verb="agent.retired")
    assert (event.before, event.after) == (
        {"status": "active"},
        {"status": "retired", "reason": "Replaced by refund-bot-2."},
    )


def test_it_refuses_to_bring_a_retired_agent_back(admin_client, agent):
    agent.status = AgentStatus.RETIRED
    agent.save()
    response = save_agent(admin_client, agent, status=AgentStatus.ACTIVE, status_reason="Oops.")
    assert response.context["adminform"].form.errors["status"] == ["A retired agent cannot be resumed."]


def test_it_records_other_fields_apart_from_the_status(admin_client, agent):
    save_agent(admin_client, agent, version="2.0", status=AgentStatus.SUSPENDED, status_reason="Upgrade.")
    changed = AuditEvent.objects.get(verb="agent.changed")
    assert (changed.before, changed.after) == ({"version": "1.0"}, {"version": "2.0"})
    assert AuditEvent.objects.filter(verb="agent.suspended").exists()


@pytest.mark.parametrize("tier", [Tier.OBSERVER, Tier.CONTRIBUTOR])
def test_it_creates_an_agent_and_its_grants_in_one_save(admin_client, owner, department, tier):
    action_type = ActionTypeFactory()
    url = admin_url(Agent, "add")
    data = changeform_data(
        admin_client.get(url),
        name="Lead router",
        slug="lead-router",
        department=str(department.pk),
        owner=str(owner.pk),
        purpose="Routes new leads.",
    )
    data.update(
        {
            "grants-TOTAL_FORMS": "1",
            "grants-0-action_type": str(action_type.pk),
            "grants-0-tier": tier,
            "grants-0-min_confidence": "0.800",
        }
    )
    assert admin_client.post(url, data).status_code == 302
    agent = Agent.objects.get(slug="lead-router")
    assert Grant.objects.get(agent=agent).tier == tier
    assert AuditEvent.objects.get(verb="agent.created").after["name"] == "Lead router"
    assert AuditEvent.objects.get(verb="grant.created").agent_id == agent.pk


def test_it_saves_an_agent_without_touching_its_keys(admin_client, agent):
    key, _raw = issue_key(agent, actor=Actor.system(), label="production")
    assert save_agent(admin_client, agent, purpose="Refunds small orders.").status_code == 302
    stored = AgentKey.objects.get(pk=key.pk)
    assert (stored.label, stored.key_hash, stored.revoked_at) == ("production", key.key_hash, None)
    assert not AuditEvent.objects.filter(verb__startswith="agent_key.").exclude(verb="agent_key.issued").exists()
