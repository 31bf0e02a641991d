"""A lead logs in through the real login form in Chromium and lands on a
queue served by the real ASGI app (uvicorn) from the test database."""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocket, expect

from approvals.models import Action
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def waiting_action(propose) -> Action:
    return propose(amount=Decimal("1250.00"), reasoning="Refund the duplicate charge on order 1187.")


def log_in(page: Page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def socket_messages(page: Page, path: str) -> list[Any]:
    """Collect, decoded, every message the page's websockets to `path`
    receive. Listening from the "websocket" event on misses none."""
    messages: list[Any] = []

    def listen(socket: WebSocket) -> None:
        if socket.url.endswith(path):
            socket.on("framereceived", lambda payload: messages.append(json.loads(payload)))

    page.on("websocket", listen)
    return messages


def wait_for_message(page: Page, messages: list[Any], expected: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while expected not in messages:
        if time.monotonic() > deadline:
            raise AssertionError(f"The page's socket never received {expected}; it got {messages}.")
        page.wait_for_timeout(50)  # lets Playwright deliver events meanwhile, unlike time.sleep


def test_it_sends_a_visitor_to_the_login_form_then_back_to_the_queue(waiting_action, browser_page, lead):
    page = browser_page
    page.goto("/queue/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/queue/$"))

    log_in(page, lead.username)

    expect(page).to_have_url(re.compile(r"/queue/$"))
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    row = page.locator(f"#action-{waiting_action.pk}")
    expect(row).to_contain_text(waiting_action.action_type.slug)
    expect(row).to_contain_text("Refund Bot")
    expect(row).to_contain_text("1,250.00")
    expect(row).to_contain_text("Refund the duplicate charge on order 1187.")
    expect(page.locator("#pending-count")).to_have_text("1")


def test_it_keeps_a_wrong_password_on_the_login_form(waiting_action, browser_page, lead):
    page = browser_page
    page.goto("/queue/")
    page.get_by_label("Username").fill(lead.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_text("Your username and password didn't match.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login/"))
    expect(page.locator(f"#action-{waiting_action.pk}")).to_have_count(0)


def test_it_opens_the_live_queue_socket_with_the_login_session(waiting_action, browser_page, lead, department):
    page = browser_page
    messages = socket_messages(page, "/ws/queue/")
    page.goto("/login/")
    log_in(page, lead.username)
    expect(page.locator(f"#action-{waiting_action.pk}")).to_be_visible()

    # The browser's own session cookie and origin get it past the origin
    # check and authenticated: the consumer greets it with the lead's
    # department, over uvicorn's websocket and the Redis channel layer.
    wait_for_message(page, messages, {"type": "hello", "departments": [department.pk]})
