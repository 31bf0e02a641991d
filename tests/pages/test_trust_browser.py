"""Earned autonomy in Chromium, over the real ASGI app: the agent page and
the department dashboard draw their charts (screenshots under
test-results/), and a lead promotes a recommended grant with one click,
swapped in place by htmx."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agents.models import Tier
from approvals.models import PromotionPolicy
from tests.services.test_kill_switch_browser import log_in
from tests.support.browser import screenshot
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.trust_records import approvals, rejections

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def history(agent):
    """Two weeks of a grant's record, a day at a time, under a recommend-only policy."""
    PromotionPolicy.objects.create(department=None, auto_promote=False, window_days=14)
    grant = GrantFactory(
        agent=agent,
        action_type=ActionTypeFactory(slug="payments.refund"),
        tier=Tier.CONTRIBUTOR,
        tier_changed_at=timezone.now() - timedelta(days=30),
        tier_agent_version="1.0",
    )
    for days_ago in range(14):
        day = timezone.now() - timedelta(days=days_ago, hours=1)
        approvals(grant, 8 + days_ago % 5, created_at=day)
        rejections(grant, days_ago % 4 == 0, created_at=day)
    return grant


def test_the_agent_page_draws_its_chart_and_promotes_in_one_click(asgi_server, lead, history, browser_page, request):
    page = browser_page
    log_in(page, lead.username, "/agents/refund-bot/")

    chart = page.locator("#agent-chart svg")
    expect(chart).to_be_visible()
    expect(page.locator("#agent-chart rect.bar-volume")).to_have_count(14)
    expect(page.locator("#agent-chart circle.rate-point")).to_have_count(14)
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    screenshot(page, request.node.nodeid)

    expect(page.locator(f"#grant-{history.pk}")).to_contain_text("Recommended: contributor → executor")
    page.get_by_role("button", name="Promote payments.refund to executor").click()

    expect(page.locator("#flash")).to_contain_text("payments.refund is now executor.")
    expect(page.locator(f"#grant-{history.pk}")).to_contain_text("Executor")
    expect(page.locator("#tier-history")).to_contain_text("contributor → executor")
    expect(page.locator("#tier-history")).to_contain_text("lena-lead")
    expect(page).to_have_url(re.compile(r"/agents/refund-bot/$"))  # swapped in place, no reload
    history.refresh_from_db()
    assert history.tier == Tier.EXECUTOR


def test_the_department_dashboard_draws_approvals_and_rejections(asgi_server, lead, history, browser_page, request):
    page = browser_page
    log_in(page, lead.username, "/departments/finance/")
    expect(page.locator("#department-chart svg")).to_be_visible()
    expect(page.locator("#department-chart rect.bar-approved")).to_have_count(14)
    expect(page.locator("#department-chart rect.bar-against")).to_have_count(4)
    expect(page.locator("#near-a-change")).to_contain_text("Recommended: contributor → executor")
    screenshot(page, request.node.nodeid)
