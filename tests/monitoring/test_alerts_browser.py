"""Alerts in Chromium, over the real ASGI app and Redis: the badge in the top
bar lights up the moment a detector finds something, on whatever page the
lead has open, and acknowledging on /alerts/ clears it without a reload."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from playwright.sync_api import Page, expect

from approvals.monitoring import detectors
from tests.services.test_kill_switch_browser import log_in
from tests.support import monitoring_records as records

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# Notes when the alert socket (not the queue's) has opened.
SOCKET_WATCH = """
document.addEventListener("htmx:wsOpen", function (event) {
  if (event.detail.elt.getAttribute("ws-connect").indexOf("/ws/alerts/") === 0) { window.alertSocketOpen = true; }
});
"""


def detect_in_another_thread(agent) -> None:
    """Playwright marks this thread's event loop running, and the channel
    layer's publish refuses to run in it: detect as beat would, elsewhere."""

    def run() -> None:
        try:
            records.dispatch_attempts(agent, ["failed"] * 6)
            detectors.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)


def test_the_badge_lights_up_live_and_acknowledging_clears_it(asgi_server, lead, agent, browser_page):
    page: Page = browser_page
    page.add_init_script(SOCKET_WATCH)
    log_in(page, lead.username, "/queue/")
    badge = page.locator("#alert-badge")
    expect(badge).to_have_text("Alerts")
    page.wait_for_function("() => window.alertSocketOpen === true")  # it has joined its groups by then

    detect_in_another_thread(agent)

    expect(badge.locator(".count")).to_have_text("1")
    badge.click()
    row = page.locator("#open-alert-rows tr.alert")
    expect(row).to_contain_text("attempts in the last 60 minutes to carry out Refund Bot's approved actions failed")

    row.get_by_role("button", name="Acknowledge").click()

    expect(page.locator("tr.alert.acknowledged")).to_contain_text("Acknowledged by lena-lead")
    expect(badge.locator(".count")).to_have_count(0)
