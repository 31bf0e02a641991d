""" "Preview the effect" on the admin's change forms of a grant, an action type
and a promotion policy: the edit as typed is replayed, nothing is saved, and
the preview is the one audit event written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import Grant, Tier
from approvals.models import ActionType, PromotionPolicy
from audit.models import AuditEvent
from tests.admin.test_admin_pages import admin_url, changeform_data
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


def preview(client, model, pk, htmx=True, **changes):
    change_url = admin_url(model, "change", pk)
    data = changeform_data(client.get(change_url), _preview_days="7", **changes)
    headers = {"HX-Request": "true"} if htmx else None
    return client.post(change_url + "preview/", data, headers=headers)


def test_the_grant_form_offers_the_preview(admin_client, refunds):
    page = admin_client.get(admin_url(Grant, "change", refunds.pk)).content.decode()
    assert "Preview the effect" in page and 'hx-post="preview/"' in page


def test_raising_the_limit_in_the_grant_form_previews_its_cost_and_saves_nothing(admin_client, refunds):
    response = preview(admin_client, Grant, refunds.pk, auto_approve_max_amount="500")
    page = response.content.decode()
    assert response.status_code == 200 and "<html" not in page
    assert "Newly auto-approved: 1" in page and "300.00 EUR" in page
    refunds.refresh_from_db()
    assert refunds.auto_approve_max_amount == Decimal("100.00")
    assert list(AuditEvent.objects.values_list("verb", flat=True).filter(verb__startswith="policy.")) == [
        "policy.simulated"
    ]


def test_without_javascript_the_preview_is_a_page_of_its_own(admin_client, refunds):
    page = preview(admin_client, Grant, refunds.pk, htmx=False, auto_approve_max_amount="500").content.decode()
    assert "<html" in page and "Preview the effect" in page and "300.00 EUR" in page


def test_an_invalid_form_is_not_previewed(admin_client, refunds):
    page = preview(admin_client, Grant, refunds.pk, min_confidence="2").content.decode()
    assert "Correct the form first" in page
    assert not AuditEvent.objects.filter(verb="policy.simulated").exists()


def test_raising_an_action_types_risk_previews_the_refunds_going_back_to_a_human(admin_client, refunds):
    page = preview(admin_client, ActionType, refunds.action_type.pk, risk="high").content.decode()
    assert "Queued for a human" in page
    assert "executor → contributor" in page  # the trust rule caps it at its next evaluation
    assert ActionType.objects.get(pk=refunds.action_type.pk).risk == "low"


def test_a_promotion_policy_edit_is_previewed(admin_client, refunds):
    policy = PromotionPolicy.objects.get(department=refunds.agent.department)
    page = preview(admin_client, PromotionPolicy, policy.pk, min_decisions="1").content.decode()
    assert 'id="simulation-verdicts"' in page
    assert PromotionPolicy.objects.get(pk=policy.pk).min_decisions == 50


def test_an_edit_of_nothing_replayed_says_so(admin_client, refunds):
    page = preview(admin_client, ActionType, refunds.action_type.pk, name="Refunds").content.decode()
    assert "changes nothing the simulator replays: risk" in page
