"""A decision taken in Slack, seen in the browser: a lead watches the queue in
Chromium over the real ASGI app (uvicorn, Redis channel layer); another lead
clicks Approve in Slack, which reaches the real interactions endpoint over
HTTP, signed as Slack signs; the row leaves the watching lead's queue live,
and the audit trail shows the approval came through Slack."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from approvals.models import Action
from approvals.rules.lifecycle import Status
from tests.notify.test_slack import CHANNEL, SECRET, signed, slack_body
from tests.pages.test_browser_queue import background as background
from tests.pages.test_browser_queue import open_queue
from tests.support.slack_standin import SlackStandIn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_decision_taken_in_slack_leaves_the_browser_queue_live_and_shows_in_the_audit_trail(
    asgi_server, settings, department, lead, other_lead, propose, background, browser_page
):
    with SlackStandIn() as slack:
        settings.SLACK_BOT_TOKEN = slack.token
        settings.SLACK_SIGNING_SECRET = SECRET
        settings.SLACK_API_URL = slack.url
        department.slack_channel = CHANNEL
        department.save()
        slack.person("U0OMAR", other_lead.email)
        page = browser_page
        open_queue(page, lead.username)
        action = background(propose, "contributor").result(timeout=10)
        expect(page.locator(f"#action-{action.pk}")).to_be_visible()
        assert slack.wait_for("chat.postMessage")[0].args["channel"] == CHANNEL

        body = slack_body(action, "approve", "U0OMAR")
        response = httpx.post(
            f"{asgi_server.url}/slack/interactions/",
            content=body,
            headers={**signed(body), "Content-Type": "application/x-www-form-urlencoded"},
        )

        assert response.status_code == 200
        expect(page.locator(f"#action-{action.pk}")).to_have_count(0)  # pushed: no reload
        assert background(lambda: Action.objects.get(pk=action.pk).status).result(timeout=10) == Status.APPROVED
        assert "Approved by omar-lead" in str(slack.wait_for("chat.update")[0].args["blocks"])
        page.goto("/audit/?verb=action.approved")
        expect(page.locator("tr", has_text="action.approved").locator('[data-door="slack"]')).to_have_text("via slack")
