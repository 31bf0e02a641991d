"""The kill switch in Chromium, over the real ASGI app: a lead opens the
agent's page, clicks "Suspend" once, and the agent's very next proposal
through the API is refused with 403 `agent_suspended`."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from agents.models import Tier
from agents.services import issue_key
from audit.log import Actor
from tests.support.factories import PASSWORD, ActionTypeFactory, GrantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def agent_key(agent) -> str:
    GrantFactory(agent=agent, action_type=ActionTypeFactory(slug="payments.refund"), tier=Tier.CONTRIBUTOR)
    return issue_key(agent, actor=Actor.system("test"))[1]


def log_in(page: Page, username: str, next_url: str) -> None:
    page.goto(f"/login/?next={next_url}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(next_url) + "$"))


def propose(base_url: str, key: str) -> httpx.Response:
    body = {"action_type": "payments.refund", "payload": {"note": "refund order 1187"}, "reasoning": "Charged twice."}
    return httpx.post(f"{base_url}/api/v1/actions/", json=body, headers={"Authorization": f"Bearer {key}"})


def test_one_click_on_the_agent_page_stops_the_next_proposal(asgi_server, lead, agent, agent_key, browser_page):
    page = browser_page
    assert propose(asgi_server.url, agent_key).status_code == 201
    log_in(page, lead.username, "/agents/refund-bot/")
    expect(page.locator("#agent-status")).to_contain_text("Active")

    page.get_by_role("button", name="Suspend Refund Bot").click()

    expect(page.locator("#agent-status")).to_contain_text("Suspended by lena-lead")
    expect(page.locator("#flash")).to_contain_text("Refund Bot is suspended")
    expect(page.get_by_role("button", name="Resume Refund Bot")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/agents/refund-bot/$"))  # swapped in place by htmx, no reload

    refused = propose(asgi_server.url, agent_key)  # the very next one, no waiting
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "agent_suspended"


def test_resuming_in_the_browser_asks_for_the_reason(asgi_server, lead, agent, agent_key, browser_page):
    page = browser_page
    log_in(page, lead.username, "/agents/refund-bot/")
    page.get_by_role("button", name="Suspend Refund Bot").click()
    resume = page.get_by_role("button", name="Resume Refund Bot")

    resume.click()  # the reason is required: the browser keeps the form
    expect(page.locator("#agent-status")).to_contain_text("Suspended")

    page.get_by_label("Why is it safe to resume?").fill("Fixed in 1.1.")
    resume.click()
    expect(page.locator("#agent-status")).to_contain_text("resumed by lena-lead")
    assert propose(asgi_server.url, agent_key).status_code == 201
