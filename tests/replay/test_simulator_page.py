"""/simulator/: admins and the department's leads replay a change and see the
comparison; a lead of another department gets a 404 for what is not theirs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import Tier
from approvals.models import PromotionPolicy
from audit.models import AuditEvent
from tests.support.factories import AdminFactory, DepartmentFactory, UserFactory
from tests.support.replay_histories import days_ago, grant, proposed, refund_type, rejected

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def refunds(agent, lead):
    PromotionPolicy.objects.create(department=agent.department, demote_threshold=Decimal(0))
    refunds = refund_type()
    refund_grant = grant(agent, refunds, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal("100.00"))
    proposed(agent, refunds, days_ago(2), "40.00")
    rejected(proposed(agent, refunds, days_ago(1), "300.00"), lead)
    return refund_grant


@pytest.fixture
def stranger(db):
    """A lead of another department."""
    lead = UserFactory(username="sam-support")
    DepartmentFactory(name="Support", slug="support", leads=[lead])
    return lead


def simulate_grant(client, grant_id, headers=None, **fields):
    data = {"kind": "grant", "target": str(grant_id), "days": "7", **fields}
    return client.post("/simulator/", data, headers=headers)


def test_a_lead_sees_the_comparison_and_the_cost_of_a_grant_change(client, lead, refunds):
    client.force_login(lead)
    response = simulate_grant(client, refunds.pk, auto_approve_max_amount="500")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="simulation-verdicts"' in page
    assert "Newly auto-approved: 1" in page
    assert "300.00 EUR" in page
    assert 'id="chart-replayed"' in page
    event = AuditEvent.objects.get(verb="policy.simulated")
    assert (event.actor_label, event.department_id) == (lead.username, refunds.agent.department_id)


def test_the_htmx_answer_is_the_result_alone(client, lead, refunds):
    client.force_login(lead)
    response = simulate_grant(client, refunds.pk, headers={"HX-Request": "true"}, auto_approve_max_amount="500")
    page = response.content.decode()
    assert 'id="simulation-result"' in page and "<html" not in page


def test_an_invalid_value_is_said_plainly_and_nothing_is_recorded(client, lead, refunds):
    client.force_login(lead)
    page = simulate_grant(client, refunds.pk, auto_approve_max_amount="lots").content.decode()
    assert "auto_approve_max_amount: Enter a number." in page
    assert not AuditEvent.objects.filter(verb="policy.simulated").exists()


def test_a_lead_of_another_department_gets_a_404_for_its_grant_and_its_policy(client, stranger, refunds):
    client.force_login(stranger)
    assert client.get("/simulator/").status_code == 200
    assert simulate_grant(client, refunds.pk, tier="contributor").status_code == 404
    policy = {"kind": "policy", "target": "finance", "min_decisions": "10"}
    assert client.post("/simulator/", policy).status_code == 404
    assert client.post("/simulator/", {**policy, "target": "global"}).status_code == 404
    risk = {"kind": "action_type", "target": "payments.refund", "risk": "high"}
    assert client.post("/simulator/", risk).status_code == 404
    assert not AuditEvent.objects.filter(verb="policy.simulated").exists()


def test_someone_who_leads_nothing_gets_a_404(client, owner, refunds):
    client.force_login(owner)
    assert client.get("/simulator/").status_code == 404


def test_an_admin_simulates_the_global_default_policy(client, refunds):
    client.force_login(AdminFactory(username="ada-admin"))
    response = client.post("/simulator/", {"kind": "policy", "target": "global", "min_decisions": "10", "days": "7"})
    assert response.status_code == 200
    assert "global default promotion policy" in response.content.decode()
