"""Slack (approvals/notify/slack.py, approvals/pages/slack.py), against a stand-in
of Slack's Web API on loopback (tests/support/slack_standin.py) and the real
interactions endpoint, with requests signed exactly as Slack signs them:
v0=HMAC-SHA256("v0:<timestamp>:<body>") with the signing secret.

A new pending action is posted to its department's channel; a click decides
through approvals.services as the browser does, with `door: "slack"` in the
audit trail; a forged signature, a stale timestamp and a replay are refused;
an unlinked or unauthorised clicker is told why, alone; every posted message
is updated when the action is decided anywhere."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from agents.models import Tier
from approvals import services
from approvals.models import Action, ActionType, Decision, Risk, SlackIdentity, SlackMessage
from approvals.notify import decision_links
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, DepartmentFactory, GrantFactory, UserFactory
from tests.support.slack_standin import SlackStandIn

pytestmark = pytest.mark.usefixtures("eager_tasks")

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0FINANCE"
URL = "/slack/interactions/"


@pytest.fixture
def slack(settings: Any, department: Any) -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        settings.SLACK_BOT_TOKEN = standin.token
        settings.SLACK_SIGNING_SECRET = SECRET
        settings.SLACK_API_URL = standin.url
        department.slack_channel = CHANNEL
        department.save()
        yield standin


@pytest.fixture
def refunds(agent: Any) -> ActionType:
    action_type = ActionTypeFactory(slug="payments.refund", name="Refund a payment", risk=Risk.LOW)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


@pytest.fixture
def proposed(agent: Any, refunds: ActionType, django_capture_on_commit_callbacks: Any) -> Callable[..., Action]:
    def _propose(action_type: ActionType | None = None) -> Action:
        with django_capture_on_commit_callbacks(execute=True):
            action, _ = services.propose(
                agent,
                action_type or refunds,
                payload={"note": "order 1001"},
                reasoning="Never arrived.",
                confidence=Decimal("0.95"),
            )
        return Action.objects.get(pk=action.pk)

    return _propose


def slack_body(action: Action, verb: str, slack_user: str, *, reason: str = "", digest: str | None = None) -> str:
    """The form body Slack POSTs for a button click (a block_actions payload)."""
    payload = {
        "type": "block_actions",
        "user": {"id": slack_user, "username": slack_user},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "channel_id": CHANNEL},
        "actions": [
            {
                "action_id": verb,
                "block_id": "decide",
                "type": "button",
                "value": f"{action.pk}:{digest or action.standing_digest}",
            }
        ],
        "state": {"values": {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}},
    }
    return urlencode({"payload": json.dumps(payload)})


def signed(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's headers: the signature over v0:<timestamp>:<body>."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


@pytest.fixture
def click(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST to the real endpoint as Slack does, and run what it left for after the commit."""
    client = Client()

    def _click(body: str, headers: dict[str, str] | None = None) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                URL,
                data=body,
                content_type="application/x-www-form-urlencoded",
                headers=signed(body) if headers is None else headers,
            )

    return _click


def _state(action: Action) -> tuple[Any, ...]:
    fresh = Action.objects.get(pk=action.pk)
    return fresh.status, Decision.objects.filter(action=action).count(), AuditEvent.objects.count()


def _texts(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


def _buttons(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def _ephemeral(slack: SlackStandIn) -> str:
    return slack.of("chat.postEphemeral")[-1].args["text"]


# ---------------------------------------------------------------- posting


def test_a_new_pending_action_is_posted_to_its_departments_channel(slack, proposed):
    action = proposed()

    [call] = slack.of("chat.postMessage")
    assert call.token == slack.token and call.args["channel"] == CHANNEL
    blocks = call.args["blocks"]
    for text in ("Refund a payment by", "order 1001", "Reasoning: Never arrived.", "Policy: "):
        assert text in _texts(blocks)
    assert _buttons(blocks) == ["approve", "reject", "open"]
    assert f"/actions/{action.pk}/" in _texts(blocks)
    assert SlackMessage.objects.get(action=action).channel == CHANNEL


def test_nothing_is_posted_for_a_department_without_a_channel(slack, proposed, department):
    department.slack_channel = ""
    department.save()
    proposed()
    assert slack.of("chat.postMessage") == []


# ---------------------------------------------------------------- deciding in Slack


def test_an_approve_click_signed_as_slack_signs_decides_and_updates_the_message(slack, proposed, lead, click):
    slack.person("U0LENA", lead.email)
    action = proposed()

    response = click(slack_body(action, "approve", "U0LENA"))

    assert response.status_code == 200
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED
    event = AuditEvent.objects.get(verb="action.approved", object_id=str(action.pk))
    assert event.actor_label == lead.get_username()
    assert event.context["door"] == "slack" and event.context["slack_user"] == "U0LENA"
    assert SlackIdentity.objects.get(slack_user_id="U0LENA").user == lead
    [update] = slack.of("chat.update")
    assert update.args["ts"] == SlackMessage.objects.get(action=action).ts
    assert _buttons(update.args["blocks"]) == ["open"] and "Approved by lena-lead" in _texts(update.args["blocks"])
    assert _ephemeral(slack) == "Approved: payments.refund."
    assert slack.of("chat.postEphemeral")[-1].args["user"] == "U0LENA"


def test_a_reject_click_needs_the_reason_typed_in_the_message(slack, proposed, lead, click):
    slack.person("U0LENA", lead.email)
    action = proposed()
    before = _state(action)

    click(slack_body(action, "reject", "U0LENA"))
    assert _state(action) == before
    assert "Say why you reject it" in _ephemeral(slack)

    click(slack_body(action, "reject", "U0LENA", reason="Duplicate."))
    assert Action.objects.get(pk=action.pk).status == Status.REJECTED
    assert Decision.objects.get(action=action).comment == "Duplicate."


# ---------------------------------------------------------------- refused requests change nothing


def test_a_forged_signature_is_refused(slack, proposed, lead, click):
    slack.person("U0LENA", lead.email)
    action = proposed()
    body = slack_body(action, "approve", "U0LENA")
    before = _state(action)

    for headers in (
        signed(body, secret="not-the-secret"),
        {**signed(body), "X-Slack-Signature": "v0=" + "0" * 64},
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {},
    ):
        assert click(body, headers).status_code == 401
    # Signed for another body: the signature covers every byte.
    assert click(body.replace("approve", "reject"), signed(body)).status_code == 401
    assert _state(action) == before
    assert slack.of("users.info") == [] and slack.of("chat.update") == []


def test_a_stale_timestamp_is_refused(slack, proposed, lead, click):
    slack.person("U0LENA", lead.email)
    action = proposed()
    body = slack_body(action, "approve", "U0LENA")
    before = _state(action)

    for skew in (-301, -3600, 301):
        assert click(body, signed(body, timestamp=int(time.time()) + skew)).status_code == 401
    assert _state(action) == before


def test_a_replayed_request_is_refused(slack, proposed, lead, other_lead, click, agent):
    slack.person("U0LENA", lead.email)
    critical = ActionTypeFactory(slug="payments.wire", risk=Risk.CRITICAL)
    GrantFactory(agent=agent, action_type=critical, tier=Tier.CONTRIBUTOR)
    action = proposed(critical)
    body = slack_body(action, "approve", "U0LENA")
    headers = signed(body)

    assert click(body, headers).status_code == 200
    after_first = _state(action)
    assert after_first[:2] == (Status.PENDING, 1)  # one approval of two

    assert click(body, headers).status_code == 409
    assert _state(action) == after_first


def test_an_unlinked_slack_user_is_told_and_nothing_changes(slack, proposed, lead, click):
    slack.person("U0NOBODY", "nobody@elsewhere.example")
    slack.person("U0UNCONFIRMED", lead.email, confirmed=False)
    action = proposed()
    before = _state(action)

    for slack_user in ("U0NOBODY", "U0UNCONFIRMED", "U0UNKNOWN"):
        assert click(slack_body(action, "approve", slack_user)).status_code == 200
        assert "not linked to a Countersign user" in _ephemeral(slack)
        assert slack.of("chat.postEphemeral")[-1].args["user"] == slack_user
    assert _state(action) == before
    assert not SlackIdentity.objects.exists()


@pytest.mark.parametrize(
    ("who", "told"),
    [
        ("owner", "You own this agent"),
        ("outsider", "Only the leads of this action's department may decide it."),
    ],
)
def test_an_unauthorised_click_is_told_why_and_nothing_changes(slack, proposed, owner, department, click, who, told):
    department.leads.add(owner)  # leading does not let the owner decide
    people = {"owner": owner, "outsider": UserFactory(username="sal-sales")}
    DepartmentFactory(name="Sales", slug="sales", leads=[people["outsider"]])
    slack.person("U0CLICKER", people[who].email)
    action = proposed()
    before = _state(action)

    click(slack_body(action, "approve", "U0CLICKER"))

    assert told in _ephemeral(slack)
    assert _state(action) == before
    assert slack.of("chat.update") == []


def test_a_click_on_a_payload_edited_since_is_refused(slack, proposed, lead, other_lead, click, agent):
    slack.person("U0LENA", lead.email)
    critical = ActionTypeFactory(slug="payments.wire", risk=Risk.CRITICAL)
    GrantFactory(agent=agent, action_type=critical, tier=Tier.CONTRIBUTOR)
    action = proposed(critical)
    old_digest = action.standing_digest
    services.approve(action.pk, other_lead, edited_payload={"note": "order 2002"})
    before = _state(action)

    click(slack_body(action, "approve", "U0LENA", digest=old_digest))

    assert "Not done" in _ephemeral(slack) and "payload" in _ephemeral(slack)
    assert _state(action) == before


# ---------------------------------------------------------------- decided anywhere: the message follows


def test_the_message_is_updated_when_the_action_is_decided_in_the_browser(
    slack, proposed, lead, django_capture_on_commit_callbacks
):
    action = proposed()
    client = Client()
    client.force_login(lead)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/actions/{action.pk}/reject/", {"reason": "Not today."})

    [update] = slack.of("chat.update")
    assert _buttons(update.args["blocks"]) == ["open"] and "Rejected by lena-lead" in _texts(update.args["blocks"])


def test_the_message_is_updated_when_the_action_is_decided_by_an_email_link(
    slack, proposed, lead, django_capture_on_commit_callbacks
):
    action = proposed()
    path = decision_links.path_of(decision_links.issue(action, lead, decision_links.APPROVE))
    client = Client()
    client.force_login(lead)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(path)

    assert Action.objects.get(pk=action.pk).status == Status.APPROVED
    [update] = slack.of("chat.update")
    assert "Approved by lena-lead" in _texts(update.args["blocks"])
