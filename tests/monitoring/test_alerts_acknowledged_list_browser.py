"""In Chromium, over the real ASGI app and Redis: a lead watching /alerts/
sees an alert another lead acknowledges leave the open list and appear
under "Recently acknowledged", with who took it, without a reload."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from playwright.sync_api import Page, expect

from approvals.models import Alert, AlertKind
from approvals.monitoring import alerts
from tests.monitoring.test_alerts_browser import SOCKET_WATCH
from tests.services.test_kill_switch_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def open_alert(agent) -> Alert:
    return alerts.raise_alert(
        AlertKind.DISPATCH_ERRORS,
        severity="warning",
        message="Most of its dispatches fail.",
        department=agent.department,
        agent=agent,
    )


def acknowledge_in_another_thread(alert: Alert, user) -> None:
    """Playwright marks this thread's event loop running, and the channel
    layer's publish refuses to run in it: acknowledge as another lead's
    request would, elsewhere."""

    def run() -> None:
        try:
            alerts.acknowledge(alert.pk, user=user)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)


def test_an_alert_another_lead_acknowledges_moves_to_the_acknowledged_list_live(
    asgi_server, lead, other_lead, open_alert, browser_page
):
    page: Page = browser_page
    page.add_init_script(SOCKET_WATCH)
    log_in(page, lead.username, "/alerts/")
    expect(page.locator("#open-alert-rows tr.alert")).to_contain_text("Most of its dispatches fail.")
    expect(page.locator("#acknowledged-alert-rows")).to_contain_text("None in the last 7 days.")
    page.wait_for_function("() => window.alertSocketOpen === true")  # it has joined its groups by then

    acknowledge_in_another_thread(open_alert, other_lead)

    acknowledged = page.locator("#acknowledged-alert-rows tr.alert.acknowledged")
    expect(acknowledged).to_contain_text("Most of its dispatches fail.")
    expect(acknowledged).to_contain_text("Acknowledged by omar-lead")
    expect(page.locator("#open-alert-rows")).to_contain_text("Nothing needs your attention.")
    expect(page.locator("#alert-badge .count")).to_have_count(0)
