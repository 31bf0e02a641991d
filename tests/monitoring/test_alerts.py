"""Alerts: stored once per finding, sent once, quiet after an acknowledgement,
sent again when they get worse; acknowledged on /alerts/ (audited) by the
people who see them; emailed to the agent's owner and the department's leads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from approvals.models import Alert, AlertKind, AlertSeverity
from approvals.monitoring import alerts, detectors
from audit.models import AuditEvent
from tests.support import monitoring_records as records
from tests.support.factories import PASSWORD, AgentFactory, DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def raise_it(agent, django_capture_on_commit_callbacks):
    """raise_it(severity=..., now=...) -> Alert: one finding about the agent, its after-commit work run."""

    def _raise(severity: str = AlertSeverity.WARNING, **fields) -> Alert:
        with django_capture_on_commit_callbacks(execute=True):
            return alerts.raise_alert(
                AlertKind.DISPATCH_ERRORS,
                severity=severity,
                message=fields.pop("message", "Most of its dispatches fail."),
                department=agent.department,
                agent=agent,
                **fields,
            )

    return _raise


def test_it_emails_the_owner_and_the_departments_leads_once(raise_it, owner, lead, other_lead):
    alert = raise_it()

    assert sorted(message.to[0] for message in mail.outbox) == sorted(user.email for user in (owner, lead, other_lead))
    assert alert.notified_at is not None
    email = mail.outbox[0]
    assert "Most of its dispatches fail." in email.body and "/alerts/" in email.body
    assert email.subject == "Needs attention: approved actions failing — Refund Bot (refund-bot)"


def test_a_repeat_while_open_is_counted_not_sent(raise_it):
    first = raise_it()
    mail.outbox.clear()

    again = raise_it(message="Still failing.")

    assert again.pk == first.pk and Alert.objects.count() == 1
    again.refresh_from_db()
    assert again.repeats == 1 and again.message == "Still failing."
    assert mail.outbox == []


def test_the_detectors_every_minute_raise_one_alert(agent, django_capture_on_commit_callbacks):
    records.dispatch_attempts(agent, ["failed"] * 6)

    for minute in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            detectors.run(timezone.now() + timedelta(minutes=minute))

    alert = Alert.objects.get()
    assert alert.repeats == 2
    assert len(mail.outbox) == 3  # the owner and two leads, once


def test_a_worse_repeat_is_sent_again(raise_it):
    first = raise_it()
    mail.outbox.clear()

    again = raise_it(severity=AlertSeverity.CRITICAL, message="It was suspended.")

    assert again.pk == first.pk and again.severity == AlertSeverity.CRITICAL
    assert len(mail.outbox) == 3 and "It was suspended." in mail.outbox[0].body


def test_a_milder_repeat_keeps_the_graver_words(raise_it):
    raise_it(severity=AlertSeverity.CRITICAL, message="Countersign suspended it.")

    again = raise_it(severity=AlertSeverity.WARNING, message="It keeps trying.")

    again.refresh_from_db()
    assert (again.severity, again.message, again.repeats) == (AlertSeverity.CRITICAL, "Countersign suspended it.", 1)


def test_an_acknowledged_alert_stays_quiet_for_the_repeat_period(raise_it, lead, settings):
    settings.ALERT_REPEAT_MINUTES = 60
    first = raise_it()
    alerts.acknowledge(first.pk, user=lead)
    mail.outbox.clear()

    quiet = raise_it(now=timezone.now() + timedelta(minutes=30))

    assert quiet.pk == first.pk and Alert.objects.count() == 1 and mail.outbox == []
    quiet.refresh_from_db()
    assert quiet.repeats == 1 and not quiet.is_open

    later = raise_it(now=timezone.now() + timedelta(minutes=61))

    assert later.pk != first.pk and later.is_open and len(mail.outbox) == 3


def test_a_worse_finding_after_an_acknowledgement_is_raised_at_once(raise_it, lead):
    first = raise_it()
    alerts.acknowledge(first.pk, user=lead)

    worse = raise_it(severity=AlertSeverity.CRITICAL)

    assert worse.pk != first.pk and worse.is_open


# ---------------------------------------------------------------- acknowledging


def logged_in(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_a_lead_acknowledges_with_htmx_and_it_is_audited(client, raise_it, lead):
    alert = raise_it()

    response = logged_in(client, lead).post(reverse("alert-acknowledge", args=[alert.pk]), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="alert-{alert.pk}"' in html and "Acknowledged by lena-lead" in html
    assert 'id="alert-badge"' in html and 'hx-swap-oob="true"' in html
    alert.refresh_from_db()
    assert alert.acknowledged_by == lead and alert.acknowledged_at is not None
    event = AuditEvent.objects.get(verb="alert.acknowledged")
    assert event.actor_label == "lena-lead" and event.object_id == str(alert.pk)
    assert event.agent_id == alert.agent_id and event.department_id == alert.department_id


def test_acknowledging_without_javascript_redirects_with_a_message(client, raise_it, owner):
    alert = raise_it()

    response = logged_in(client, owner).post(reverse("alert-acknowledge", args=[alert.pk]), follow=True)

    assert response.redirect_chain[-1][0] == reverse("alerts")
    assert "Acknowledged" in response.content.decode()


def test_acknowledging_needs_a_csrf_token(raise_it, lead):
    from django.test import Client

    alert = raise_it()
    client = logged_in(Client(enforce_csrf_checks=True), lead)

    assert client.post(reverse("alert-acknowledge", args=[alert.pk])).status_code == 403
    alert.refresh_from_db()
    assert alert.is_open


def test_a_lead_of_another_department_neither_sees_nor_acknowledges_it(client, raise_it):
    alert = raise_it()
    stranger = UserFactory(username="sam-stranger")
    DepartmentFactory(slug="support", leads=[stranger])
    logged_in(client, stranger)

    assert client.post(reverse("alert-acknowledge", args=[alert.pk])).status_code == 404
    page = client.get(reverse("alerts")).content.decode()
    assert "Most of its dispatches fail." not in page
    alert.refresh_from_db()
    assert alert.is_open


def test_the_alerts_page_and_the_badge_show_the_open_alerts(client, raise_it, lead):
    raise_it()
    other = AgentFactory(department=DepartmentFactory(slug="support"))
    alerts.raise_alert(
        AlertKind.OVER_BUDGET, severity="warning", message="Not yours.", department=other.department, agent=other
    )

    page = logged_in(client, lead).get(reverse("alerts")).content.decode()

    assert "Most of its dispatches fail." in page and "Not yours." not in page
    assert '<span class="count" aria-label="1 open">1</span>' in page
    assert 'ws-connect="/ws/alerts/?list=1"' in page


def test_anonymous_visitors_are_sent_to_log_in(client):
    assert client.get(reverse("alerts")).status_code == 302
