"""Smoke test of the embedded default (SQLite, in-process channel layer and
tasks): an agent proposes through the API, the row reaches a lead's open
queue socket live, the lead approves it through the htmx endpoint the row's
form posts to, and the approved action is dispatched to a webhook receiver
on loopback. Nothing but this process is running."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client
from websockets.sync.client import ClientConnection, connect

from agents.models import Tier
from agents.services import issue_key
from approvals.models import Action
from approvals.rules.digests import payload_digest
from approvals.rules.lifecycle import Status
from audit.log import Actor
from tests.security.test_agent_text_escaped import assert_shown_as_text, hostile
from tests.support.dispatching import webhook_type
from tests.support.factories import PASSWORD, GrantFactory
from tests.support.servers import wait_for

pytestmark = pytest.mark.embedded

TIMEOUT = 10


class FormFields(HTMLParser):
    """The inputs of the first <form class="approve"> in a fragment: what htmx would post."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.done = False
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form" and not self.done and "approve" in (found.get("class") or "").split():
            self.inside = True
        elif tag == "input" and self.inside and found.get("name"):
            self.fields[found["name"] or ""] = found.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.inside:
            self.inside, self.done = False, True


def session_cookies(username: str) -> dict[str, str]:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def next_frame_about(socket: ClientConnection, action_id: str) -> str:
    """The next pushed frame that mentions the action (a counters-only frame may come between)."""
    while True:
        frame = socket.recv(timeout=TIMEOUT)
        assert isinstance(frame, str)
        if f'id="action-{action_id}"' in frame:
            return frame


@pytest.fixture
def webhook_refunds(agent, receiver) -> Any:
    action_type = webhook_type(receiver.url, slug="payments.refund", name="Refund a payment")
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def test_propose_push_approve_dispatch_on_the_embedded_default(embedded_server, lead, agent, webhook_refunds, receiver):
    _, key = issue_key(agent, actor=Actor.system("test"))
    cookies = session_cookies(lead.username)
    cookie_header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    ws_url = embedded_server.url.replace("http://", "ws://") + "/ws/queue/"

    with connect(ws_url, origin=embedded_server.url, additional_headers={"Cookie": cookie_header}) as socket:
        hello = json.loads(socket.recv(timeout=TIMEOUT))
        assert hello == {"type": "hello", "departments": [agent.department_id]}

        # 1. The agent proposes through the API.
        proposal = {
            "action_type": "payments.refund",
            "payload": {"note": "refund order 1187", "amount": 25.0},
            "reasoning": hostile("reasoning") + " Charged twice.",
            "confidence": 0.9,
        }
        answer = httpx.post(
            f"{embedded_server.url}/api/v1/actions/", json=proposal, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 201, answer.text
        action_id = answer.json()["id"]
        # Routed by the in-process task, queued from the door's gathering (approvals.after_answer.Gathering).
        wait_for(lambda: Action.objects.get(pk=action_id).routed_at, what="the routing")

        # 2. The row reaches the lead's socket, the agent's text as text.
        pushed = next_frame_about(socket, action_id)
        assert re.search(rf'<tr id="action-{action_id}" class="row', pushed)
        assert_shown_as_text(pushed, "reasoning")

        # 3. The lead approves with the row's own form, as htmx posts it.
        with httpx.Client(base_url=embedded_server.url, cookies=cookies) as browser:
            assert browser.get("/queue/").status_code == 200  # the CSRF cookie, as the page sets it
            form = FormFields()
            form.feed(pushed)
            assert form.done, "the pushed row has no approve form"
            decided = browser.post(
                f"/actions/{action_id}/approve/",
                data=form.fields,
                headers={"HX-Request": "true", "X-CSRFToken": browser.cookies["csrftoken"]},
            )
        assert decided.status_code == 200, decided.text[:500]
        assert f'id="action-{action_id}"' not in decided.text  # the answer removes the row
        assert "Approved payments.refund" in decided.text

        # The row leaves the lead's screen over the socket too.
        assert f'<tr id="action-{action_id}" data-gone></tr>' in next_frame_about(socket, action_id)

    # 4. In-process tasks dispatched it to the receiver, signed, once.
    wait_for(lambda: receiver.effects, what="the webhook dispatch")
    assert [(request.path, request.signature_valid) for request in receiver.requests] == [("/hooks/refund/", True)]
    assert receiver.requests[0].key == action_id
    sent = receiver.requests[0].json()
    assert sent["payload"] == proposal["payload"]
    assert sent["payload_digest"] == payload_digest(proposal["payload"])
    final = wait_for(lambda: Action.objects.filter(pk=action_id, status=Status.SUCCEEDED).first(), what="succeeded")
    assert final.decisions.get().user == lead
