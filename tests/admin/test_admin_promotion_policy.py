"""Promotion policies in the admin: the global default and a department's
override, every threshold the evaluation reads, and the evaluation using the
override for that department's grants only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import Grant, Tier
from approvals.autonomy import trust
from approvals.models import PromotionPolicy
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory
from tests.support.trust_records import approvals

pytestmark = pytest.mark.django_db

OVERRIDE = {
    "window_days": "14",
    "min_decisions": "20",
    "promote_threshold": "0.980",
    "demote_threshold": "0.850",
    "failure_limit": "5",
    "anomaly_multiplier": "20.00",
    "require_lower_bound": "on",
    # auto_promote left unticked: recommend-only
}


def grant_with_record(agent, approved: int):
    grant = GrantFactory(
        agent=agent,
        action_type=ActionTypeFactory(),
        tier=Tier.CONTRIBUTOR,
        tier_changed_at=timezone.now() - timedelta(days=30),
        tier_agent_version="1.0",
    )
    approvals(grant, approved, created_at=timezone.now() - timedelta(days=10))
    return grant


def test_an_admin_adds_a_department_override_with_every_threshold(admin_client, department):
    response = admin_client.post(
        reverse("admin:approvals_promotionpolicy_add"), {"department": department.pk, **OVERRIDE}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = PromotionPolicy.objects.get(department=department)
    assert (policy.window_days, policy.min_decisions, str(policy.promote_threshold)) == (14, 20, "0.980")
    assert (str(policy.demote_threshold), policy.failure_limit, str(policy.anomaly_multiplier)) == ("0.850", 5, "20.00")
    assert (policy.auto_promote, policy.require_lower_bound) == (False, True)


def test_the_list_shows_both_modes(admin_client, department):
    PromotionPolicy.for_department(None)
    PromotionPolicy.objects.create(department=department, auto_promote=False, require_lower_bound=True)
    html = admin_client.get(reverse("admin:approvals_promotionpolicy_changelist")).content.decode()
    assert "Require lower bound" in html and "global default" in html and "Finance" in html


def test_the_override_governs_its_department_and_the_default_the_others(agent, department):
    PromotionPolicy.objects.create(department=department, window_days=14, min_decisions=100, auto_promote=True)
    elsewhere = AgentFactory(slug="elsewhere-bot", department=DepartmentFactory(slug="support"))
    ours, theirs = grant_with_record(agent, 60), grant_with_record(elsewhere, 60)

    assessed = {e.grant.pk: e.assessment for e in trust.assess_grants(Grant.objects.all())}

    # 60 decisions ten days ago: inside our 14-day window but short of our 100;
    # outside the default 7-day window of the other department.
    assert assessed[ours.pk].explanation == "60 of the 100 decisions a promotion needs."
    assert assessed[theirs.pk].explanation == "0 of the 50 decisions a promotion needs."
