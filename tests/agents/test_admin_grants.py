"""Grants in the admin, on their own pages and inline on the agent: the
permanent gate of high and critical action types shows as a form error, and
every grant edit is in the audit trail with its agent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents.models import Agent, Grant, Tier
from approvals.autonomy import trust
from approvals.models import Risk, TierChange
from audit.models import AuditEvent
from tests.admin.test_admin_pages import admin_url, changeform_data
from tests.support.factories import ActionTypeFactory, GrantFactory

GATE_ERROR = "Critical action types never go past contributor."


@pytest.fixture
def critical(db):
    return ActionTypeFactory(slug="records.delete", risk=Risk.CRITICAL)


def grant_add_data(client, **fields: Any) -> dict[str, Any]:
    return changeform_data(client.get(admin_url(Grant, "add")), **fields)


def agent_page_with_new_grant(client, agent: Agent, **fields: Any) -> dict[str, Any]:
    """The agent's admin form with one more grant row."""
    data = changeform_data(client.get(admin_url(Agent, "change", agent.pk)))
    row = int(data["grants-TOTAL_FORMS"])
    data["grants-TOTAL_FORMS"] = str(row + 1)
    data.update({f"grants-{row}-{name}": str(value) for name, value in fields.items()})
    data.setdefault(f"grants-{row}-min_confidence", "0.800")
    return data


def test_it_refuses_executor_tier_for_a_critical_action_type(admin_client, agent, critical):
    data = grant_add_data(admin_client, agent=agent.pk, action_type=critical.pk, tier=Tier.EXECUTOR)
    response = admin_client.post(admin_url(Grant, "add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["tier"] == [GATE_ERROR]
    assert not Grant.objects.exists()


def test_it_refuses_it_in_the_grants_on_the_agent_page_too(admin_client, agent, critical):
    data = agent_page_with_new_grant(admin_client, agent, action_type=critical.pk, tier=Tier.EXECUTOR)
    response = admin_client.post(admin_url(Agent, "change", agent.pk), data)
    assert response.status_code == 200
    grants = next(
        inline.formset for inline in response.context["inline_admin_formsets"] if inline.formset.prefix == "grants"
    )
    assert grants.errors[-1]["tier"] == [GATE_ERROR]
    assert not Grant.objects.exists()


def test_it_grants_executor_tier_for_a_low_risk_action_type(admin_client, agent):
    low = ActionTypeFactory(risk=Risk.LOW)
    data = grant_add_data(admin_client, agent=agent.pk, action_type=low.pk, tier=Tier.EXECUTOR)
    assert admin_client.post(admin_url(Grant, "add"), data).status_code == 302
    assert Grant.objects.get().tier == Tier.EXECUTOR


def test_a_tier_set_in_the_admin_goes_through_the_one_writer_into_the_tier_history(admin_client, agent):
    long_ago = timezone.now() - timedelta(days=30)
    grant = GrantFactory(agent=agent, tier=Tier.OBSERVER, tier_changed_at=long_ago, max_actions_per_day=5)
    url = admin_url(Grant, "change", grant.pk)
    data = changeform_data(admin_client.get(url), tier=Tier.CONTRIBUTOR, max_actions_per_day=20)
    assert admin_client.post(url, data).status_code == 302
    grant.refresh_from_db()
    assert (grant.tier, grant.max_actions_per_day) == (Tier.CONTRIBUTOR, 20)
    assert grant.tier_changed_at > long_ago

    change = TierChange.objects.get(grant=grant)
    assert (change.from_tier, change.to_tier, change.automatic) == (Tier.OBSERVER, Tier.CONTRIBUTOR, False)
    assert change.changed_by.get_username() == "admin" and "in the admin" in change.explanation
    event = AuditEvent.objects.get(verb="grant.promoted")
    assert event.before["tier"] == Tier.OBSERVER and event.after["tier"] == Tier.CONTRIBUTOR
    assert (event.agent_id, event.department_id) == (agent.pk, agent.department_id)
    # The other fields are the admin's own edit; the tier is not written twice.
    edit = AuditEvent.objects.get(verb="grant.changed")
    assert "tier" not in edit.after and edit.after["max_actions_per_day"] == 20
    assert [c.pk for c in trust.tier_history(agent)] == [change.pk]


def test_it_keeps_the_tier_clock_when_only_a_limit_changes(admin_client, agent):
    long_ago = timezone.now() - timedelta(days=30)
    grant = GrantFactory(agent=agent, tier_changed_at=long_ago)
    url = admin_url(Grant, "change", grant.pk)
    admin_client.post(url, changeform_data(admin_client.get(url), max_actions_per_day="20"))
    grant.refresh_from_db()
    assert (grant.max_actions_per_day, grant.tier_changed_at) == (20, long_ago)


def test_it_records_grants_added_changed_and_removed_on_the_agent_page(admin_client, agent):
    kept, removed = GrantFactory(agent=agent, tier=Tier.OBSERVER), GrantFactory(agent=agent)
    new_type = ActionTypeFactory(slug="crm.update_lead_owner")
    data = agent_page_with_new_grant(admin_client, agent, action_type=new_type.pk, tier=Tier.CONTRIBUTOR)
    forms = {data[f"grants-{i}-id"]: i for i in range(int(data["grants-INITIAL_FORMS"]))}
    data[f"grants-{forms[str(kept.pk)]}-tier"] = Tier.CONTRIBUTOR
    data[f"grants-{forms[str(removed.pk)]}-DELETE"] = "on"

    assert admin_client.post(admin_url(Agent, "change", agent.pk), data).status_code == 302

    events = {event.verb: event for event in AuditEvent.objects.filter(verb__startswith="grant.")}
    assert set(events) == {"grant.created", "grant.promoted", "grant.deleted"}
    assert events["grant.created"].after["action_type"] == "crm.update_lead_owner"
    assert events["grant.promoted"].after["tier"] == Tier.CONTRIBUTOR
    (change,) = trust.tier_history(agent)
    assert (change.grant_id, change.from_tier, change.to_tier) == (kept.pk, Tier.OBSERVER, Tier.CONTRIBUTOR)
    assert events["grant.deleted"].object_id == str(removed.pk)
    assert {event.agent_id for event in events.values()} == {agent.pk}
    assert not Grant.objects.filter(pk=removed.pk).exists()
