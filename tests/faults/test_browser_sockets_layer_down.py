"""A lead's page in Chromium while the channel layer does not answer: both
sockets are closed with 1013 "try again later", and the reconnect pause
grows with each refusal (static/countersign/sockets.js), where htmx alone
would start again from its first step after every refused socket's open."""

from __future__ import annotations

import re

import pytest
from channels.layers import channel_layers
from playwright.sync_api import Page, expect

from approvals.pages.socket_outage import TRY_AGAIN_LATER
from tests.support.factories import PASSWORD
from tests.support.servers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Before any page script: record each socket's close code, and pin the
# jitter to its top so a pause is exactly its step (1000 ms x 2^step).
WATCH = """
window.__closes = [];
document.addEventListener("htmx:wsClose", (e) => window.__closes.push(e.detail.event.code));
Math.random = () => 1;
"""


@pytest.fixture
def layer_down(settings, department):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{free_port()}/0"}]},
        }
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def test_the_sockets_are_refused_for_now_and_the_pause_grows(layer_down, lead, browser_page: Page):
    page = browser_page
    page.context.add_init_script(WATCH)
    page.goto("/login/?next=/queue/")
    page.get_by_label("Username").fill(lead.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue/$"))  # the page itself needs no channel layer

    page.wait_for_function(f"() => window.__closes.filter((code) => code === {TRY_AGAIN_LATER}).length >= 3")

    closes, pause = page.evaluate("() => [window.__closes, htmx.config.wsReconnectDelay(0)]")
    assert set(closes) == {TRY_AGAIN_LATER}  # refused for now, never a failed handshake (1006)
    # htmx hands the delay function a retry count of 0 after every open; the refusals count instead.
    assert pause == 1000 * 2 ** min(len(closes), 6)
