"""Emails: leads hear of new items at once, in an hourly digest, or not at
all, as each chose; backup approvers hear of escalations; nobody hears of a
change that rolled back."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, AgentStatus, Grant, Tier
from approvals import services, tasks
from approvals.models import Action, ActionType, Department, NotificationMode, NotificationPreference, Risk
from approvals.notify import emails as notifications
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.usefixtures("eager_tasks")

SITE = "https://countersign.example.com"

Propose = Callable[..., Action]


@pytest.fixture(autouse=True)
def _site(settings: Any) -> None:
    settings.SITE_URL = SITE
    settings.DEFAULT_FROM_EMAIL = "countersign@example.com"


@pytest.fixture(autouse=True)
def _quiet_channels() -> Iterator[None]:
    with mock.patch("approvals.live.publish_action_changed"):
        yield


@pytest.fixture
def refunds() -> ActionType:
    return ActionTypeFactory(slug="payments.refund", name="Refund a payment", risk=Risk.HIGH, money=True)


@pytest.fixture
def refund(agent: Agent, refunds: ActionType, django_capture_on_commit_callbacks: Any) -> Propose:
    """Propose (a refund unless told otherwise) and commit, which routes it and
    emails: refund(by=agent, tier=..., amount=..., action_type=refunds) -> Action."""

    def _propose(
        *,
        by: Agent | None = None,
        tier: str = Tier.CONTRIBUTOR,
        amount: str = "1250.00",
        action_type: ActionType | None = None,
    ) -> Action:
        proposer, action_type = by or agent, action_type or refunds
        Grant.objects.update_or_create(agent=proposer, action_type=action_type, defaults={"tier": tier})
        with django_capture_on_commit_callbacks(execute=True):
            action, _ = services.propose(
                proposer,
                action_type,
                payload={"note": "order 1001", **({"amount": float(amount)} if action_type.moves_money else {})},
                reasoning="Never arrived.",
                confidence=Decimal("0.95"),
            )
        action.refresh_from_db()
        return action

    return _propose


def _to(messages: list[mail.EmailMessage]) -> list[str]:
    return sorted(address for message in messages for address in message.to)


def _link(action: Action) -> str:
    return f"{SITE}/actions/{action.pk}/"


# ---------------------------------------------------------------- immediately


def test_it_emails_each_immediate_lead_once_per_new_pending_item(refund, lead, other_lead, mailoutbox):
    first = refund()
    second = refund(amount="20.00")

    assert _to(mailoutbox) == sorted([lead.email, other_lead.email] * 2)
    to_lena = [m for m in mailoutbox if m.to == [lead.email]]
    assert [_link(first) in m.body for m in to_lena] == [True, False]
    assert [_link(second) in m.body for m in to_lena] == [False, True]
    message = to_lena[0]
    assert message.from_email == "countersign@example.com"
    assert message.subject == "Decision needed in Finance: Refund a payment by Refund Bot"
    for fact in ("Refund Bot", "Refund a payment (payments.refund)", "1,250.00", "High", "Finance"):
        assert fact in message.body
    assert timezone.localtime(first.sla_deadline).strftime("%d %b %Y, %H:%M") in message.body
    # Facts, the preview of the effect and links: the reasoning stays in the system.
    assert "order 1001" in message.body
    assert "Never arrived" not in message.body


def test_it_keeps_the_payload_out_of_the_email_when_the_preview_is_off(refund, lead, settings, mailoutbox):
    settings.DECISION_EMAIL_PREVIEW = False

    refund()

    [message] = [m for m in mailoutbox if m.to == [lead.email]]
    html = (
        message.alternatives[0].content if hasattr(message.alternatives[0], "content") else message.alternatives[0][0]
    )
    for text in (message.body, html):
        assert "order 1001" not in text
        assert "Never arrived" not in text


def test_it_emails_nobody_about_an_action_that_does_not_wait(refund, agent, mailoutbox):
    auto_approved = refund(tier=Tier.EXECUTOR, action_type=ActionTypeFactory(risk=Risk.LOW))
    shadowed = refund(tier=Tier.OBSERVER)
    agent.status = AgentStatus.SUSPENDED
    agent.save()
    blocked = refund()

    assert [auto_approved.status, shadowed.status, blocked.status] == [Status.APPROVED, Status.SHADOWED, Status.BLOCKED]
    assert mailoutbox == []


def test_it_tells_a_lead_who_owns_the_agent_that_another_lead_must_approve(refund, department, owner, mailoutbox):
    department.leads.add(owner)

    refund()

    [to_owner] = [m for m in mailoutbox if m.to == [owner.email]]
    assert "You own this agent" in to_owner.body
    assert all("You own this agent" not in m.body for m in mailoutbox if m is not to_owner)


def test_it_emails_only_the_leads_of_the_actions_department(refund, refunds, lead, mailoutbox):
    legal_lead = UserFactory(username="lou-legal")
    refunds.routing_department = DepartmentFactory(slug="legal", name="Legal", leads=[legal_lead])
    refunds.save()

    refund()

    assert _to(mailoutbox) == [legal_lead.email]


def test_it_skips_leads_who_chose_the_digest_or_no_email(refund, lead, other_lead, mailoutbox):
    services.set_notification_mode(lead, NotificationMode.HOURLY)
    services.set_notification_mode(other_lead, NotificationMode.OFF)

    refund()

    assert mailoutbox == []


def test_it_skips_leads_without_an_address_or_an_account(refund, lead, other_lead, mailoutbox):
    lead.email = ""
    lead.save()
    other_lead.is_active = False
    other_lead.save()

    refund()

    assert mailoutbox == []


def test_it_emails_nothing_about_an_item_decided_before_the_email_went(agent, refunds, lead, mailoutbox):
    GrantFactory(agent=agent, action_type=refunds, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(agent, refunds, payload={"amount": 10}, reasoning="Asked for.")
    services.approve(action.pk, lead)

    assert tasks.notify_new_action(str(action.pk)) == 0
    assert mailoutbox == []


def test_it_sends_nothing_when_the_proposal_rolls_back(agent, refunds, mailoutbox, django_capture_on_commit_callbacks):
    GrantFactory(agent=agent, action_type=refunds, tier=Tier.CONTRIBUTOR)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.propose(agent, refunds, payload={"amount": 10}, reasoning="Asked for.")
        raise RuntimeError("the request failed after proposing")

    assert callbacks == []
    assert mailoutbox == []
    assert not Action.objects.exists()


# ---------------------------------------------------------------- escalation


@pytest.fixture
def backups(department: Department) -> list[Any]:
    bea, bo = UserFactory(username="bea-backup"), UserFactory(username="bo-backup")
    department.backup_approvers.add(bea, bo)
    # Escalation emails are the backups' duty, not news: sent whatever they chose for new items.
    services.set_notification_mode(bo, NotificationMode.OFF)
    return [bea, bo]


def _overdue(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(sla_deadline=timezone.now() - timedelta(minutes=1))


def test_it_emails_the_backup_approvers_when_an_action_escalates(
    refund, backups, mailoutbox, django_capture_on_commit_callbacks
):
    action = refund()
    _overdue(action)
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.escalate_overdue_actions() == 1

    assert _to(mailoutbox) == sorted(backup.email for backup in backups)
    message = mailoutbox[0]
    assert message.subject == "Overdue in Finance, now yours to decide: Refund a payment by Refund Bot"
    assert "backup approver for Finance" in message.body
    assert _link(action) in message.body

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.escalate_overdue_actions() == 0
    assert len(mailoutbox) == 2  # once per escalation


def test_it_sends_nothing_when_the_escalation_rolls_back(
    refund, backups, mailoutbox, django_capture_on_commit_callbacks
):
    action = refund()
    _overdue(action)
    mailoutbox.clear()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.escalate(action.pk)
        raise RuntimeError("rolled back")

    assert callbacks == []
    assert mailoutbox == []
    assert Action.objects.get(pk=action.pk).escalated_at is None


def test_it_does_not_email_about_an_escalation_decided_meanwhile(refund, backups, lead, mailoutbox):
    action = refund()
    _overdue(action)
    services.escalate(action.pk)  # its after-commit email never ran: this test's transaction is open
    services.approve(action.pk, lead)
    mailoutbox.clear()

    assert tasks.notify_escalation(str(action.pk)) == 0
    assert mailoutbox == []


# ---------------------------------------------------------------- the hourly digest


@pytest.fixture
def digest_lead(lead: Any, other_lead: Any) -> Any:
    services.set_notification_mode(lead, NotificationMode.HOURLY)
    services.set_notification_mode(other_lead, NotificationMode.OFF)
    return lead


def _arrived(action: Action, at: datetime) -> None:
    Action.objects.filter(pk=action.pk).update(created_at=at)


def _last_digest(user: Any) -> datetime | None:
    return NotificationPreference.objects.get(user=user).last_digest_at


def test_it_sends_a_digest_lead_one_email_listing_every_new_item(digest_lead, refund, lead, refunds, mailoutbox):
    start = timezone.now() - timedelta(hours=2)
    NotificationPreference.objects.filter(user=lead).update(last_digest_at=start)
    small, large = refund(amount="10.00"), refund(amount="50000.00")
    decided = refund()
    services.reject(decided.pk, lead, reason="No.")
    elsewhere = refund(by=AgentFactory(slug="legal-bot", department=DepartmentFactory(slug="legal")))
    for action in (small, large, decided, elsewhere):
        _arrived(action, start + timedelta(minutes=30))
    assert mailoutbox == []  # no immediate emails for a digest lead

    assert tasks.send_lead_digests() == 1

    [digest] = mailoutbox
    assert digest.to == [lead.email]
    assert digest.subject == "2 new actions are waiting for your decision in Finance"
    assert digest.body.index(_link(large)) < digest.body.index(_link(small))  # most urgent first
    assert _link(decided) not in digest.body
    assert _link(elsewhere) not in digest.body
    assert f"{SITE}/queue/" in digest.body
    assert _last_digest(lead) > start


def test_it_sends_nothing_until_new_items_arrive(digest_lead, refund, lead, mailoutbox):
    start = timezone.now() - timedelta(hours=3)
    NotificationPreference.objects.filter(user=lead).update(last_digest_at=start)
    first = refund()
    _arrived(first, start + timedelta(minutes=10))
    hour = [start + timedelta(hours=n) for n in range(1, 4)]

    assert notifications.send_digests(now=hour[0]) == 1
    assert notifications.send_digests(now=hour[1]) == 0  # nothing new: no email
    second = refund()
    _arrived(second, hour[1] + timedelta(minutes=5))
    assert notifications.send_digests(now=hour[2]) == 1

    assert len(mailoutbox) == 2
    assert _link(first) in mailoutbox[0].body
    assert _link(first) not in mailoutbox[1].body
    assert _link(second) in mailoutbox[1].body
    assert mailoutbox[1].subject == "1 new action is waiting for your decision in Finance"


def test_it_sends_the_same_digest_once_when_two_runs_overlap(digest_lead, refund, lead, mailoutbox):
    start = timezone.now() - timedelta(hours=2)
    NotificationPreference.objects.filter(user=lead).update(last_digest_at=start)
    _arrived(refund(), start + timedelta(minutes=10))
    stale = NotificationPreference.objects.get(user=lead)  # what a second, slower run read

    assert notifications.send_digests() == 1
    assert notifications._send_digest(stale, timezone.now()) == 0

    assert len(mailoutbox) == 1


def test_it_keeps_the_items_for_the_next_digest_when_sending_fails(digest_lead, refund, lead, mailoutbox):
    start = timezone.now() - timedelta(hours=2)
    NotificationPreference.objects.filter(user=lead).update(last_digest_at=start)
    action = refund()
    _arrived(action, start + timedelta(minutes=10))

    with mock.patch.object(notifications, "get_connection", side_effect=smtplib.SMTPServerDisconnected("gone")):
        assert notifications.send_digests() == 0
    assert _last_digest(lead) == start

    assert notifications.send_digests() == 1
    assert _link(action) in mailoutbox[0].body


def test_it_starts_the_digest_window_when_a_lead_switches_to_it(refund, lead, other_lead, mailoutbox):
    refund()  # emailed to lena at once, before she switched
    services.set_notification_mode(other_lead, NotificationMode.OFF)
    mailoutbox.clear()

    services.set_notification_mode(lead, NotificationMode.HOURLY)

    assert notifications.send_digests(now=timezone.now() + timedelta(hours=1)) == 0
    assert mailoutbox == []


# ---------------------------------------------------------------- choosing


def test_it_records_a_change_of_notification_mode(lead, other_lead):
    before = timezone.now()

    preference = services.set_notification_mode(lead, "hourly", by=other_lead)

    assert preference.mode == NotificationMode.HOURLY
    assert preference.last_digest_at >= before
    [event] = AuditEvent.objects.filter(verb="notification_preference.changed")
    assert (event.actor_label, event.before, event.after) == ("omar-lead", {"mode": "immediate"}, {"mode": "hourly"})
    services.set_notification_mode(lead, "hourly")  # no change, no event
    assert AuditEvent.objects.filter(verb="notification_preference.changed").count() == 1


def test_it_refuses_an_unknown_notification_mode(lead):
    with pytest.raises(ValueError):
        services.set_notification_mode(lead, "weekly")
    assert NotificationPreference.for_user(lead).mode == NotificationMode.IMMEDIATE
    assert NotificationPreference.for_user(lead).pk is None


def test_it_sends_the_digests_every_hour_on_the_beat_schedule(settings):
    from config.celery import app

    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].endswith(".send_lead_digests")]
    assert entry["schedule"] == timedelta(hours=1)
    assert app.tasks[entry["task"]].name == tasks.send_lead_digests.name
