"""Rolling back in Chromium: a lead opens a succeeded action, gives a
reason, clicks "Roll back", and the panel shows the rollback requested."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.db import connection
from playwright.sync_api import expect

from approvals import services
from approvals.models import Action
from approvals.rules.lifecycle import Status
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

T = TypeVar("T")


def in_another_thread(function: Callable[..., T], *args: Any) -> T:
    """Read the database off this thread: its event loop is Playwright's, and
    a connection opened under it would outlive the test."""

    def closing() -> T:
        try:
            return function(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(closing).result(timeout=10)


def status_of(action_id: Any) -> str:
    return Action.objects.get(pk=action_id).status


@pytest.fixture
def succeeded(agent, lead, propose) -> Action:
    action = propose()
    services.approve(action.pk, lead)
    return services.report_result(action.pk, agent, succeeded=True, detail={"refund_id": "R-5521"}, undo={"id": 1})


def test_a_lead_requests_a_rollback_from_the_action_page(asgi_server, lead, succeeded, browser_page):
    page = browser_page
    url = f"/actions/{succeeded.pk}/"
    page.goto(f"/login/?next={url}")
    page.get_by_label("Username").fill(lead.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(url) + "$"))
    expect(page.locator("#executions")).to_contain_text("Dispatch #1")

    page.get_by_label("Reason for the rollback").fill("Refunded the wrong order.")
    page.get_by_role("button", name="Roll back").click()

    panel = page.locator("#decision-panel")
    expect(panel.locator(".badge")).to_have_text("Rollback requested")
    expect(panel).to_contain_text("Rollback requested by lena-lead")
    expect(page.locator("#flash")).to_contain_text("Rollback of")
    expect(page.get_by_role("button", name="Roll back")).to_have_count(0)
    assert in_another_thread(status_of, succeeded.pk) == Status.ROLLBACK_REQUESTED
