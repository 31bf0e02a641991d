"""The simulator in Chromium, over the real ASGI app: a lead replays a grant
change on /simulator/ and reads the table and the charts, swapped in by
htmx; an admin previews the effect of an edit on the grant's change form
before saving, the form keeping what was typed. Neither page reports a
Content-Security-Policy violation. Screenshots under test-results/."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from agents.models import Grant, Tier
from approvals.models import PromotionPolicy
from tests.services.test_kill_switch_browser import log_in
from tests.support.browser import screenshot
from tests.support.factories import PASSWORD, AdminFactory
from tests.support.replay_histories import approved, days_ago, grant, proposed, refund_type, rejected

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def week(agent, lead, other_lead):
    """A week of refunds: small ones auto-approved, large ones decided by Finance, two of them rejected."""
    PromotionPolicy.objects.create(department=agent.department, demote_threshold=Decimal(0))
    refunds = refund_type()
    refund_grant = grant(agent, refunds, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal("100.00"))
    for day in range(7):
        proposed(agent, refunds, days_ago(day, 9), "40.00")
        action = proposed(agent, refunds, days_ago(day, 14), str(200 + 50 * day))
        if day in (1, 5):
            rejected(action, other_lead)
        else:
            approved(action, other_lead)
    return refund_grant


@pytest.fixture
def admin(db):
    return AdminFactory(username="ada-admin", is_superuser=True)


def csp_violations(page: Page) -> list[str]:
    reported: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            reported.append(message.text)

    page.on("console", console)
    return reported


def test_a_lead_replays_a_grant_change_and_reads_the_table_and_the_charts(
    asgi_server, lead, week, browser_page, request
):
    page = browser_page
    violations = csp_violations(page)
    log_in(page, lead.username, "/simulator/")
    form = page.locator("#simulate-grant")
    form.get_by_label("Grant").select_option(str(week.pk))
    form.get_by_label("Auto approve max amount").fill("1000")
    form.get_by_label("Days replayed").fill("7")
    form.get_by_role("button", name="Simulate the grant change").click()

    expect(page.locator("#simulation-cost")).to_contain_text("Newly auto-approved: 7")
    expect(page.locator("#simulation-cost")).to_contain_text("rejected, vetoed, rolled back or saw fail 2")
    expect(page.locator("#simulation-cost")).to_contain_text("700.00 EUR")  # 250.00 and 450.00
    expect(page.locator("#verdict-approved td")).to_have_text(["7", "14", "+7"])
    expect(page.locator("#chart-recorded rect.bar-pending")).to_have_count(7)
    expect(page.locator("#chart-replayed rect.bar-pending")).to_have_count(0)
    expect(page.locator("#chart-replayed rect.bar-approved")).to_have_count(7)
    expect(form.get_by_label("Auto approve max amount")).to_have_value("1000")  # swapped in place
    expect(page).to_have_url(re.compile(r"/simulator/$"))
    screenshot(page, request.node.nodeid)
    assert violations == []


def test_an_admin_previews_the_effect_of_a_grant_edit_before_saving(asgi_server, admin, week, browser_page, request):
    page = browser_page
    violations = csp_violations(page)
    change_url = f"/admin/agents/grant/{week.pk}/change/"
    page.goto(f"/admin/login/?next={change_url}")
    page.get_by_label("Username").fill(admin.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(change_url) + "$"))

    page.locator("#id_auto_approve_max_amount").fill("1000")
    page.locator("#preview-days").fill("7")
    page.get_by_role("button", name="Preview the effect").click()

    preview = page.locator("#effect-preview")
    expect(preview).to_contain_text("Newly auto-approved: 7")
    expect(preview).to_contain_text("700.00 EUR")
    expect(page.locator("#id_auto_approve_max_amount")).to_have_value("1000")  # the edit is still there to save
    expect(page).to_have_url(re.compile(re.escape(change_url) + "$"))
    screenshot(page, request.node.nodeid)
    assert Grant.objects.get(pk=week.pk).auto_approve_max_amount == Decimal("100.00")
    assert violations == []
