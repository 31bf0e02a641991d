"""Emails to people, in words a lead who never saw the code understands.
Every email is here (about 400 lines), so their wording stays one voice.

- New item: one email per lead of the action's department who chose
  immediate emails (or never chose), half a minute after the action is
  routed if it still waits then (tasks.NEW_ACTION_EMAIL_DELAY_SECONDS).
- Hourly digest: one email per lead who chose it, listing the items that
  arrived in the departments they lead since their last digest and still
  wait; no email when there are none.
- Escalation: one email per backup approver of the department, whatever
  their preference: deciding overdue items is the backups' duty, not news.
- Circuit breaker: when an agent is suspended for failing dispatches, its
  owner and its department's leads, whatever their preference.
- Tier change: when a grant's trust tier moves, the agent's owner and its
  department's leads, whatever their preference.

Only Celery tasks call the senders, after the change they report has
committed: a rolled-back proposal emails nobody, and a slow mail server never
holds a row lock. Emails carry facts and links, never the agent's reasoning.
The new-item and digest emails carry each lead's one-click approve and reject
links (approvals/notify/decision_links.py); the new-item email also carries the
preview of the effect, as text and as HTML, unless DECISION_EMAIL_PREVIEW is
off (then no payload leaves the system by email; docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from agents.models import Agent
from approvals.models import Action, Department, NotificationMode, NotificationPreference, TierChange
from approvals.notify import decision_links
from approvals.reads import previews
from approvals.rules.lifecycle import Status
from audit.people import Person

log = logging.getLogger(__name__)

DIGEST_INTERVAL = timedelta(hours=1)
# A digest covers items up to a minute ago, not up to now: a proposal whose
# transaction is still open while the digest runs has a created_at from
# before it, and would otherwise fall between two digests.
DIGEST_SETTLE = timedelta(minutes=1)
DIGEST_MAX_LISTED = 50

# ---------------------------------------------------------------- who


def _reachable(users: QuerySet[Any]) -> QuerySet[Any]:
    return users.filter(is_active=True).exclude(email="").order_by("pk")


def immediate_leads(department: Department) -> QuerySet[Any]:
    """Leads who want one email per new item: those who chose it, and those who never chose."""
    quiet = [NotificationMode.HOURLY, NotificationMode.OFF]
    return _reachable(department.leads.all()).exclude(notification_preference__mode__in=quiet)


def backup_approvers(department: Department) -> QuerySet[Any]:
    return _reachable(department.backup_approvers.all())


# ---------------------------------------------------------------- what


def action_url(action: Action) -> str:
    return _absolute(reverse("action-detail", args=[action.pk]))


def _absolute(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def _settings_hint() -> str:
    # The lead's settings page belongs to the lead UI; an email must still go
    # out if that page moves, so a missing route only drops the link.
    try:
        return f" ({_absolute(reverse('lead-settings'))})"
    except NoReverseMatch:
        return ""


def _one_line(text: str) -> str:
    # Names come from the admin; a stray newline would make the subject an invalid header.
    return " ".join(text.split())


def _amount(amount: Decimal | None) -> str:
    return "none" if amount is None else f"{amount:,.2f}"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "not set"
    return timezone.localtime(moment).strftime("%d %b %Y, %H:%M %Z")


def _deadline(action: Action) -> str:
    overdue = action.sla_deadline is not None and action.sla_deadline <= timezone.now()
    return _when(action.sla_deadline) + (" (passed)" if overdue else "")


def _name(user: Person) -> str:
    return user.get_full_name() or user.get_username()


def _facts(action: Action) -> str:
    return "\n".join(f"  {label + ':':<12}{value}" for label, value in _fact_rows(action))


def _fact_rows(action: Action) -> list[tuple[str, str]]:
    return [
        ("Agent", f"{action.agent.name} ({action.agent.slug})"),
        ("Wants to", f"{action.action_type.name} ({action.action_type.slug})"),
        ("Amount", _amount(action.amount)),
        ("Risk", action.action_type.get_risk_display()),
        ("Department", action.department.name),
        ("Proposed", _when(action.created_at)),
        ("Decide by", _deadline(action)),
        ("Expires", _when(action.expires_at)),
    ]


def _owner_note(action: Action, user: Person) -> str:
    if action.agent.owner_id != user.pk:
        return ""
    return "You own this agent, so you may reject this action but another lead must approve it.\n\n"


def _email(user: Person, subject: str, body: str) -> EmailMessage:
    return EmailMessage(subject=_one_line(subject), body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[user.email])


def _links(action: Action, lead: Person) -> dict[str, str]:
    """The lead's own approve and reject links, absolute; none for who may not decide (the owner)."""
    return {verdict: _absolute(path) for verdict, path in decision_links.links_for(action, lead).items()}


def _links_text(links: dict[str, str]) -> str:
    if not links:
        return ""
    minutes = settings.DECISION_LINK_MAX_AGE_MINUTES
    return (
        f"Approve: {links['approve']}\nReject:  {links['reject']}\n"
        f"(Each link opens a page where you confirm; it works once, for you only, for {minutes} minutes.)\n\n"
    )


def _preview_text(preview: previews.Preview | None) -> str:
    if preview is None:
        return ""
    lines = [f"  {f.label}: {f.text}" for f in preview.fields]
    money = f"  Money: {preview.money}\n" if preview.money else ""
    return f"What it will do: {preview.summary or preview.title}\n{money}" + "\n".join(lines) + "\n\n"


def new_action_email(action: Action, lead: Person) -> EmailMessage:
    department = action.department.name
    subject = f"Decision needed in {department}: {action.action_type.name} by {action.agent.name}"
    links = _links(action, lead)
    preview = (
        previews.preview_of(action.action_type, action.effective_payload) if settings.DECISION_EMAIL_PREVIEW else None
    )
    body = (
        f"Hello {_name(lead)},\n\n"
        f"An AI agent is waiting for a decision in the {department} queue:\n\n"
        f"{_facts(action)}\n\n"
        f"{_preview_text(preview)}"
        f"{_links_text(links)}"
        f"Review it, then approve or reject it here:\n{action_url(action)}\n\n"
        f"{_owner_note(action, lead)}"
        f"You get one email per new item because you lead {department}. "
        f"You can switch to an hourly digest, or turn these emails off, in your settings{_settings_hint()}.\n"
    )
    message = EmailMultiAlternatives(
        subject=_one_line(subject), body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[lead.email]
    )
    html = render_to_string(
        "approvals/email/new_action.html",
        {
            "name": _name(lead),
            "action": action,
            "facts": _fact_rows(action),
            "preview": preview,
            "links": links,
            "links_until": f"{settings.DECISION_LINK_MAX_AGE_MINUTES} minutes after this email",
            "action_url": action_url(action),
            "owner_note": _owner_note(action, lead).strip(),
        },
    )
    message.attach_alternative(html, "text/html")
    return message


def escalation_email(action: Action, backup: Any) -> EmailMessage:
    department = action.department.name
    subject = f"Overdue in {department}, now yours to decide: {action.action_type.name} by {action.agent.name}"
    body = (
        f"Hello {_name(backup)},\n\n"
        f"This action in the {department} queue is past its decision deadline and nobody has decided it yet. "
        f"As a backup approver for {department}, you may now approve or reject it:\n\n"
        f"{_facts(action)}\n\n"
        f"Review it here:\n{action_url(action)}\n\n"
        f"{_owner_note(action, backup)}"
        "If nobody decides it before it expires, the agent is told it was not approved.\n"
    )
    return _email(backup, subject, body)


def digest_email(lead: Person, actions: list[Action]) -> EmailMessage:
    count = len(actions)
    departments = sorted({action.department.name for action in actions})
    where = f" in {departments[0]}" if len(departments) == 1 else ""
    items = "new action is" if count == 1 else "new actions are"
    subject = f"{count} {items} waiting for your decision{where}"
    listed = "\n\n".join(_digest_item(n, action, lead) for n, action in enumerate(actions[:DIGEST_MAX_LISTED], 1))
    more = f"\n\n...and {count - DIGEST_MAX_LISTED} more." if count > DIGEST_MAX_LISTED else ""
    body = (
        f"Hello {_name(lead)},\n\n"
        f"Since your last digest, {count} {items} waiting in the queues you lead. Most urgent first:\n\n"
        f"{listed}{more}\n\n"
        f"Your whole queue: {_absolute(reverse('queue'))}\n\n"
        "You get this digest every hour, only when there is something new, because you chose it "
        f"in your settings{_settings_hint()}.\n"
    )
    return _email(lead, subject, body)


def _digest_item(number: int, action: Action, lead: Person) -> str:
    mine = "\n   You own this agent: another lead must approve it." if action.agent.owner_id == lead.pk else ""
    links = _links(action, lead)
    one_click = f"\n   Approve: {links['approve']}\n   Reject:  {links['reject']}" if links else ""
    return (
        f"{number}. {action.action_type.name} by {action.agent.name} ({action.department.name})\n"
        f"   Amount {_amount(action.amount)}, {action.action_type.get_risk_display().lower()} risk, "
        f"decide by {_deadline(action)}\n"
        f"   {action_url(action)}{mine}{one_click}"
    )


# ---------------------------------------------------------------- sending


def _send(messages: list[EmailMessage]) -> int:
    if not messages:
        return 0
    with get_connection() as connection:  # one connection for the batch
        return connection.send_messages(messages) or 0


def _waiting(action_id: UUID | str) -> Action | None:
    """The action, if it still waits for a decision: news of a decided one would only mislead."""
    return (
        Action.objects.select_related("agent", "action_type", "department")
        .filter(pk=action_id, status=Status.PENDING)
        .first()
    )


def notify_new_action(action_id: UUID | str) -> int:
    """Email the immediate-mode leads of a new pending action; returns how many emails went."""
    action = _waiting(action_id)
    if action is None:
        return 0
    sent = _send([new_action_email(action, lead) for lead in immediate_leads(action.department)])
    log.info("Emailed %d lead(s) about new action %s", sent, action.pk)
    return sent


def notify_escalation(action_id: UUID | str) -> int:
    """Email the backup approvers of an escalated, still pending action; returns how many emails went."""
    action = _waiting(action_id)
    if action is None or action.escalated_at is None:
        return 0
    sent = _send([escalation_email(action, backup) for backup in backup_approvers(action.department)])
    log.info("Emailed %d backup approver(s) about escalated action %s", sent, action.pk)
    return sent


def send_digests(now: datetime | None = None) -> int:
    """Send every hourly-digest lead their digest; returns how many emails went.

    Each lead's window (last digest, a minute ago] is claimed before sending,
    so two runs at once send it once; a failed send gives the window back, so
    the next run lists those items instead of losing them.
    """
    cutoff = (now or timezone.now()) - DIGEST_SETTLE
    preferences = NotificationPreference.objects.filter(mode=NotificationMode.HOURLY).select_related("user")
    return sum(_send_digest(preference, cutoff) for preference in preferences)


def _send_digest(preference: NotificationPreference, cutoff: datetime) -> int:
    previous = preference.last_digest_at
    since = previous or cutoff - DIGEST_INTERVAL
    if since >= cutoff:
        return 0
    claimed = NotificationPreference.objects.filter(
        pk=preference.pk, mode=NotificationMode.HOURLY, last_digest_at=previous
    ).update(last_digest_at=cutoff)
    if not claimed:
        return 0  # another run has it, or the lead changed their mode meanwhile
    user = preference.user
    actions = list(_new_items(user, since, cutoff)) if user.is_active and user.email else []
    if not actions:
        return 0
    try:
        return _send([digest_email(user, actions)])
    except OSError:  # smtplib's errors included; one lead's failure must not stop the others
        NotificationPreference.objects.filter(pk=preference.pk, last_digest_at=cutoff).update(last_digest_at=previous)
        log.exception("The hourly digest for %s could not be sent; the next run will retry it", user)
        return 0


def _new_items(lead: Person, since: datetime, until: datetime) -> Iterable[Action]:
    return (
        Action.objects.pending()
        .filter(department__leads=lead, created_at__gt=since, created_at__lte=until)
        .select_related("agent", "action_type", "department")
        .order_by("-priority", "created_at")
    )


# ---------------------------------------------------------------- the circuit breaker


def agent_url(agent: Agent) -> str:
    # The agent's page belongs to the lead UI; fall back to the admin's page of it.
    try:
        return _absolute(reverse("agent-detail", args=[agent.slug]))
    except NoReverseMatch:
        return _absolute(reverse("admin:agents_agent_change", args=[agent.pk]))


def circuit_broken_email(agent: Agent, person: Person, reason: str) -> EmailMessage:
    role = "own" if agent.owner_id == person.pk else "lead the department of"
    subject = f"Agent suspended: {agent.name} kept failing"
    body = (
        f"Hello {_name(person)},\n\n"
        f"Countersign suspended {agent.name} ({agent.slug}), which you {role}:\n\n"
        f"  {reason}\n\n"
        "Nothing of it is dispatched while it is suspended, and it cannot propose. Its approved actions "
        "wait; none is lost. Find out why the dispatches fail (the failed actions' pages show the "
        "target's answers), then resume the agent, with a reason, here:\n"
        f"{agent_url(agent)}\n\n"
        "You get this email because you are responsible for this agent or lead its department.\n"
    )
    return _email(person, subject, body)


def notify_circuit_broken(agent_id: int, reason: str) -> int:
    """Email the owner and the department leads of an agent the circuit breaker suspended."""
    agent = Agent.objects.select_related("department").filter(pk=agent_id).first()
    if agent is None or agent.is_active:
        return 0  # resumed meanwhile: the news is stale
    people = _reachable(get_user_model().objects.filter(Q(pk=agent.owner_id) | Q(led_departments=agent.department)))
    sent = _send([circuit_broken_email(agent, person, reason) for person in people.distinct()])
    log.info("Emailed %d people about the suspension of agent %s", sent, agent.slug)
    return sent


# ---------------------------------------------------------------- trust tiers


def tier_change_email(change: TierChange, person: Person) -> EmailMessage:
    grant = change.grant
    agent = grant.agent
    role = "own" if agent.owner_id == person.pk else "lead the department of"
    if change.automatic:
        who = "the trust evaluation" + (f", run by {_name(change.changed_by)}" if change.changed_by else "")
    else:
        assert change.changed_by is not None  # a change by hand names who made it
        who = f"{_name(change.changed_by)}, on the evaluation's recommendation"
    subject = f"{agent.name}: {grant.action_type.slug} is now {change.to_tier}"
    body = (
        f"Hello {_name(person)},\n\n"
        f"{agent.name} ({agent.slug}), which you {role}, moved from {change.from_tier} to {change.to_tier} "
        f"for {grant.action_type.slug}. Decided by {who}:\n\n"
        f"  {change.explanation}\n\n"
        f"{_tier_meaning(change.to_tier)}\n\n"
        f"Its record, tier history and kill switch:\n{agent_url(agent)}\n\n"
        "You get this email because you are responsible for this agent or lead its department.\n"
    )
    return _email(person, subject, body)


def _tier_meaning(tier: str) -> str:
    return {
        "observer": "As an observer its proposals are recorded and shown to leads, never executed.",
        "contributor": "As a contributor every one of its proposals waits for a human.",
        "executor": "As an executor its proposals within the grant's limits run without waiting for a human.",
    }[tier]


def notify_tier_change(change_id: int) -> int:
    """Email the owner and the department leads of an agent whose grant changed tier."""
    change = (
        TierChange.objects.select_related("grant__agent__department", "grant__action_type", "changed_by")
        .filter(pk=change_id)
        .first()
    )
    if change is None:
        return 0
    agent = change.grant.agent
    people = _reachable(get_user_model().objects.filter(Q(pk=agent.owner_id) | Q(led_departments=agent.department)))
    sent = _send([tier_change_email(change, person) for person in people.distinct()])
    log.info("Emailed %d people about tier change %s", sent, change.pk)
    return sent
