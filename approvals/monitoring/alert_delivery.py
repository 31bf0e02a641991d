"""Sending an alert: email to the people responsible, and outbound webhooks.

- Email: the agent's owner and the department's leads (the leads alone for
  a department's queue), whatever their queue-notification preference: an
  alert is a duty, not news. Plain words and a link, as in
  approvals.notify.emails.
- Webhooks: every URL in ALERT_WEBHOOK_URLS gets a generic JSON body signed
  like the dispatch webhooks (X-Countersign-Signature, agents.signing.sign,
  with ALERT_WEBHOOK_SECRET) and Idempotency-Key alert-<id>-<severity>; every URL
  in ALERT_SLACK_WEBHOOK_URLS gets a Slack incoming-webhook body ({"text"}),
  which Slack, Mattermost, Rocket.Chat and Teams' Slack-compatible
  connectors accept.

Pure I/O over a stored alert; approvals.tasks retries what fails in passing.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.urls import reverse

from agents.signing import SIGNATURE_HEADER, sign
from approvals.models import Alert
from audit.people import Person

log = logging.getLogger(__name__)

SIGNED = "signed"
SLACK = "slack"


class WebhookFailed(Exception):
    """The receiver could not take the alert now (no answer, a time-out or a 5xx): worth retrying."""


def alert_url() -> str:
    return settings.SITE_URL.rstrip("/") + reverse("alerts")


def _subject_of(alert: Alert) -> str:
    agent = alert.agent
    return f"{agent.name} ({agent.slug})" if agent is not None else f"the {alert.department.name} queue"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- email


def recipients(alert: Alert) -> list[Any]:
    people = Q(led_departments=alert.department_id)
    if alert.agent is not None:
        people |= Q(pk=alert.agent.owner_id)
    users = get_user_model().objects.filter(people, is_active=True).exclude(email="")
    return list(users.distinct().order_by("pk"))


def alert_email(alert: Alert, person: Person) -> EmailMessage:
    if alert.agent is not None and alert.agent.owner_id == person.pk:
        why = "you own this agent"
    else:
        why = f"you lead {alert.department.name}"
    subject = f"{alert.get_severity_display()}: {alert.get_kind_display().lower()} — {_subject_of(alert)}"
    body = (
        f"Hello {person.get_full_name() or person.get_username()},\n\n"
        f"Countersign noticed something about {_subject_of(alert)}:\n\n"
        f"  {alert.message}\n\n"
        "Look into it, then acknowledge the alert so the others know someone has it:\n"
        f"{alert_url()}\n\n"
        f"You get this email because {why}. If the same thing is noticed again while the alert is open, "
        "you are not emailed again.\n"
    )
    return EmailMessage(_one_line(subject), body, settings.DEFAULT_FROM_EMAIL, [person.email])


def email(alert: Alert) -> int:
    messages = [alert_email(alert, person) for person in recipients(alert)]
    if not messages:
        return 0
    with get_connection() as connection:
        return connection.send_messages(messages) or 0


# ---------------------------------------------------------------- webhooks


def signed_body(alert: Alert) -> dict[str, Any]:
    return {
        "event": "alert",
        "id": alert.pk,
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.get_kind_display(),
        "message": alert.message,
        "agent": alert.agent.slug if alert.agent is not None else None,
        "department": alert.department.slug,
        "raised_at": alert.raised_at.isoformat(),
        "repeats": alert.repeats,
        "url": alert_url(),
    }


def slack_body(alert: Alert) -> dict[str, Any]:
    marker = {"critical": ":rotating_light:", "warning": ":warning:"}.get(alert.severity, ":information_source:")
    return {
        "text": (
            f"{marker} *{alert.get_severity_display()}: {alert.get_kind_display()}* — {_subject_of(alert)}\n"
            f"{alert.message}\n<{alert_url()}|Open the alerts in Countersign>"
        )
    }


def post(alert: Alert, url: str, style: str) -> int:
    """POST the alert to one receiver; returns its HTTP status. Raises WebhookFailed when a retry may help."""
    if style == SIGNED:
        content = json.dumps(signed_body(alert), separators=(",", ":")).encode()
        headers = {
            SIGNATURE_HEADER: sign(settings.ALERT_WEBHOOK_SECRET, content),
            # With the severity: an escalated alert is news again for a receiver that keys on it.
            "Idempotency-Key": f"alert-{alert.pk}-{alert.severity}",
        }
    elif style == SLACK:
        content, headers = json.dumps(slack_body(alert)).encode(), {}
    else:
        raise ValueError(f"Unknown alert webhook style {style!r}: use {SIGNED!r} or {SLACK!r}.")
    headers |= {"Content-Type": "application/json", "User-Agent": "Countersign"}
    try:
        response = _client().post(url, content=content, headers=headers, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS)
    except httpx.TransportError as error:  # time-outs included
        raise WebhookFailed(f"Could not deliver alert {alert.pk} to {url}: {error!r}") from error
    if response.status_code >= 500:
        raise WebhookFailed(f"HTTP {response.status_code} from {url} for alert {alert.pk}")
    if not response.is_success:
        # A 4xx (or a redirect, not followed) will not change on a retry: log it for whoever set the URL.
        log.error("Alert webhook %s refused alert %s: HTTP %s", url, alert.pk, response.status_code)
    return response.status_code


@functools.cache
def _client() -> httpx.Client:
    # One per process, as approvals.dispatch.executors: no redirects, so a signed body never lands somewhere unplanned.
    return httpx.Client(follow_redirects=False)
