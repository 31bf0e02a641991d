"""Alerts sent to outbound webhooks on loopback: the generic body signed as
dispatches are (and verified by the receiver), Slack's body, retries of a
receiver that fails in passing."""

from __future__ import annotations

import json

import pytest

from agents.client import SIGNATURE_HEADER, verify_signature
from approvals.models import AlertKind, AlertSeverity
from approvals.monitoring import alerts
from tests.support.receivers import Answer, Receiver

pytestmark = pytest.mark.django_db

SECRET = "alert-webhook-secret"


@pytest.fixture
def receiver(settings):
    with Receiver(SECRET) as generic:
        settings.ALERT_WEBHOOK_URLS = [f"{generic.url}/countersign-alerts"]
        settings.ALERT_WEBHOOK_SECRET = SECRET
        settings.ALERT_SLACK_WEBHOOK_URLS = []
        yield generic


def raise_one(agent, capture):
    with capture(execute=True):
        return alerts.raise_alert(
            AlertKind.BLOCKED_PROPOSALS,
            severity=AlertSeverity.CRITICAL,
            message="Refund Bot tried 20 times to do what it is not allowed to.",
            department=agent.department,
            agent=agent,
        )


def test_the_generic_body_arrives_signed_and_the_signature_verifies(
    receiver, agent, django_capture_on_commit_callbacks
):
    alert = raise_one(agent, django_capture_on_commit_callbacks)

    [request] = receiver.requests
    assert request.signature_valid
    assert verify_signature(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    assert not verify_signature("another-secret", request.body, request.headers[SIGNATURE_HEADER])
    assert request.key == f"alert-{alert.pk}-critical"
    body = request.json()
    assert body == {
        "event": "alert",
        "id": alert.pk,
        "kind": "blocked_proposals",
        "severity": "critical",
        "title": "Repeatedly asking for what it may not do",
        "message": "Refund Bot tried 20 times to do what it is not allowed to.",
        "agent": "refund-bot",
        "department": "finance",
        "raised_at": alert.raised_at.isoformat(),
        "repeats": 0,
        "url": "http://localhost:8000/alerts/",
    }
    assert receiver.effects[f"alert-{alert.pk}-critical"]["request"] == body  # carried out: the receiver accepted it


def test_slack_gets_its_own_body(receiver, agent, settings, django_capture_on_commit_callbacks):
    with Receiver(SECRET) as slack:
        slack.answer(Answer(200))  # Slack's hooks are not signed: answer instead of checking
        settings.ALERT_SLACK_WEBHOOK_URLS = [f"{slack.url}/services/T000/B000/XXXX"]

        raise_one(agent, django_capture_on_commit_callbacks)

        [request] = slack.requests
    text = json.loads(request.body)["text"]
    assert text.startswith(":rotating_light: *Urgent: Repeatedly asking for what it may not do* — Refund Bot")
    assert "<http://localhost:8000/alerts/|Open the alerts in Countersign>" in text


def test_a_repeat_is_not_posted_again(receiver, agent, django_capture_on_commit_callbacks):
    raise_one(agent, django_capture_on_commit_callbacks)
    raise_one(agent, django_capture_on_commit_callbacks)

    assert len(receiver.requests) == 1


def test_a_receiver_failing_in_passing_gets_the_alert_on_a_retry(receiver, agent, django_capture_on_commit_callbacks):
    receiver.answer(Answer(503))

    alert = raise_one(agent, django_capture_on_commit_callbacks)

    assert [request.key for request in receiver.requests] == [f"alert-{alert.pk}-critical"] * 2
    assert f"alert-{alert.pk}-critical" in receiver.effects
