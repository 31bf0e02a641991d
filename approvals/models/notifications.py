"""How people are told: email preferences, one-click decision links, Slack messages and identities."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from approvals.models.action import Action
from audit.people import Person


class NotificationMode(models.TextChoices):
    IMMEDIATE = "immediate", "Immediately: one email per new item"
    HOURLY = "hourly", "Hourly digest"
    OFF = "off", "Off"


class NotificationPreference(models.Model):
    """How one person hears of new items in the queues they lead. Someone
    without a row is emailed immediately. Escalation emails to backup
    approvers do not depend on it: they are the backups' duty, not news."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    mode = models.CharField(
        max_length=10,
        choices=NotificationMode.choices,
        default=NotificationMode.IMMEDIATE,
        help_text="How this person is emailed about new items waiting in the departments they lead.",
    )
    last_digest_at = models.DateTimeField(
        null=True, blank=True, help_text="The next hourly digest lists the items that arrived after this."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(mode__in=NotificationMode.values), name="notification_mode_valid")
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.get_mode_display().lower()}"

    @classmethod
    def for_user(cls, user: Person) -> NotificationPreference:
        """The user's preference; an unsaved default when they never chose one."""
        return cls.objects.filter(user=user).first() or cls(user=user)


class DecisionLink(models.Model):
    """One approve or reject link in one lead's email (approvals/notify/decision_links.py).

    The URL carries this row's id, signed; the row binds the link to the
    action, the payload digest the email showed and the lead it was sent to,
    says until when it may be used, and marks its use: set once, by a
    conditional update in the decision's own transaction."""

    class Verdict(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="decision_links")
    lead = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    payload_digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(verdict__in=["approve", "reject"]), name="decision_link_verdict"),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} link for {self.action_id}"


class SlackMessage(models.Model):
    """A message Countersign posted about an action: updated when it is decided."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="slack_messages")
    channel = models.CharField(max_length=80)
    ts = models.CharField(max_length=40, help_text="Slack's id of the message in its channel.")
    posted_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["action", "channel"], name="slack_message_once_per_channel")]

    def __str__(self) -> str:
        return f"{self.channel}/{self.ts}"


class SlackIdentity(models.Model):
    """A Slack user linked to a Countersign user by the verified email Slack reports."""

    slack_user_id = models.CharField(max_length=40, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_identities")
    email = models.EmailField()
    linked_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "Slack identities"

    def __str__(self) -> str:
        return f"{self.slack_user_id} = {self.email}"


class SlackDelivery(models.Model):
    """A signed Slack request already acted on: the same signature twice is a replay."""

    signature = models.CharField(max_length=100, unique=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.signature
