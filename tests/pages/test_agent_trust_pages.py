"""Earned autonomy on /agents/ and /agents/<slug>/: each grant's record with
its interval and distance to a move, the daily chart, the tier history, the
evaluation on demand and the one-click promotion, for leads and admins only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Tier
from approvals.autonomy import trust
from approvals.models import PromotionPolicy, TierChange
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory
from tests.support.trust_records import approvals, rejections

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def logged_in(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


@pytest.fixture
def refunds(agent):
    grant = GrantFactory(
        agent=agent,
        action_type=ActionTypeFactory(slug="payments.refund"),
        tier_changed_at=timezone.now() - timedelta(days=30),
        tier_agent_version="1.0",
    )
    approvals(grant, 92)
    rejections(grant, 6)  # 93.9 %: between the thresholds
    return grant


@pytest.fixture
def recommend_only(db):
    return PromotionPolicy.objects.create(department=None, auto_promote=False)


@pytest.fixture
def recommended(refunds, recommend_only):
    approvals(refunds, 30)  # 122 of 128: 95.3 %
    return refunds


def test_each_grant_shows_its_rate_interval_and_distance_to_a_move(lead, refunds):
    html = logged_in(lead).get("/agents/refund-bot/").content.decode()
    assert "<strong>93.9 %</strong>" in html  # 92 of 98
    assert "[87.3 %\u201397.2 %]</span> of 98" in html  # the Wilson interval, en dash between
    assert "Promotion: 22 approvals in a row." in html  # 114 of 120 is 95 %
    assert "Demotion: 5 decisions against in a row." in html  # 92 of 103 is under 90 %
    assert "median decision 5 min" in html


def test_the_page_draws_the_daily_chart_server_side(lead, refunds):
    html = logged_in(lead).get("/agents/refund-bot/").content.decode()
    chart = html[html.index('<figure class="chart" id="agent-chart">') :]
    chart = chart[: chart.index("</figure>")]
    assert "<svg" in chart and "<script" not in chart
    assert chart.count('<rect class="bar-volume"') == 1  # every action of the record is from today
    assert "98 proposals" in chart
    assert '<polyline class="rate-line"' in chart or '<circle class="rate-point"' in chart


def test_the_list_shows_each_agents_approval_rate(lead, refunds):
    html = logged_in(lead).get("/agents/").content.decode()
    assert "93.9 %" in html and "of 98" in html


def test_a_lead_evaluates_on_demand_and_sees_the_tier_history(lead, refunds):
    approvals(refunds, 30)  # 122 of 128
    response = logged_in(lead).post("/agents/refund-bot/evaluate/", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Evaluated Refund Bot: payments.refund contributor → executor." in html
    assert 'id="tier-history" hx-swap-oob="true"' in html
    assert "automatic (run by lena-lead)" in html
    refunds.refresh_from_db()
    assert refunds.tier == Tier.EXECUTOR


def test_evaluating_without_javascript_redirects_with_a_message(lead, refunds):
    response = logged_in(lead).post("/agents/refund-bot/evaluate/", follow=True)
    assert response.redirect_chain == [("/agents/refund-bot/", 302)]
    assert "Evaluated Refund Bot: no tier changes." in response.content.decode()


def test_a_recommendation_offers_one_click_promotion_to_a_lead(lead, recommended):
    client = logged_in(lead)
    html = client.get("/agents/refund-bot/").content.decode()
    assert "Recommended: contributor → executor" in html
    url = f"/agents/refund-bot/grants/{recommended.pk}/promote/"
    assert f'hx-post="{url}"' in html

    response = client.post(url, **HTMX)

    assert response.status_code == 200
    assert "payments.refund is now executor." in response.content.decode()
    change = TierChange.objects.get()
    assert (change.automatic, change.changed_by, change.to_tier) == (False, lead, "executor")
    assert AuditEvent.objects.filter(verb="grant.promoted", actor_label="lena-lead").exists()


def test_the_owner_sees_the_recommendation_but_may_not_promote(owner, recommended):
    client = logged_in(owner)
    html = client.get("/agents/refund-bot/").content.decode()
    assert "Recommended: contributor → executor" in html
    assert "/promote/" not in html and "/evaluate/" not in html
    assert client.post(f"/agents/refund-bot/grants/{recommended.pk}/promote/").status_code == 403
    assert client.post("/agents/refund-bot/evaluate/").status_code == 403
    assert not TierChange.objects.exists()


def test_a_lead_of_another_department_cannot_even_find_it(recommended):
    stranger = UserFactory(username="sven-support")
    DepartmentFactory(slug="support", leads=[stranger])
    client = logged_in(stranger)
    assert client.post(f"/agents/refund-bot/grants/{recommended.pk}/promote/").status_code == 404
    assert client.post("/agents/refund-bot/evaluate/").status_code == 404
    assert not TierChange.objects.exists()


def test_a_grant_of_another_agent_is_not_promoted_through_this_page(lead, agent, recommend_only):
    other = GrantFactory(agent=AgentFactory(slug="other-bot", department=agent.department))
    assert logged_in(lead).post(f"/agents/refund-bot/grants/{other.pk}/promote/").status_code == 404


def test_promotion_needs_the_csrf_token(lead, recommended):
    client = logged_in(lead, enforce_csrf_checks=True)
    assert client.post(f"/agents/refund-bot/grants/{recommended.pk}/promote/").status_code == 403
    assert client.post("/agents/refund-bot/evaluate/").status_code == 403
    assert not TierChange.objects.exists()


def test_promotion_is_post_only(lead, recommended):
    assert logged_in(lead).get(f"/agents/refund-bot/grants/{recommended.pk}/promote/").status_code == 405


def test_a_stale_recommendation_is_refused_with_the_reason(lead, recommended):
    rejections(recommended, 20)
    response = logged_in(lead).post(f"/agents/refund-bot/grants/{recommended.pk}/promote/", follow=True)
    assert "No promotion is recommended for payments.refund now" in response.content.decode()
    assert not TierChange.objects.exists()


def test_the_tier_history_lists_changes_with_reason_and_who(lead, owner, refunds, recommend_only):
    approvals(refunds, 30)
    trust.promote_on_recommendation(refunds, lead)
    html = logged_in(owner).get("/agents/refund-bot/").content.decode()
    history = html[html.index('id="tier-history"') :]
    assert "contributor → executor" in history
    assert "Promoted" in history and "lena-lead" in history
