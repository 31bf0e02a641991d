"""What monitoring keeps: alerts and the background processes' heartbeats."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from approvals.models.department import Department


class AlertKind(models.TextChoices):
    ACTION_RATE = "action_rate", "Acting far faster than usual"
    DISPATCH_ERRORS = "dispatch_errors", "Approved actions failing"
    BLOCKED_PROPOSALS = "blocked_proposals", "Repeatedly asking for what it may not do"
    LOW_APPROVAL = "low_approval", "People reject much of what it proposes"
    PAST_SLA = "past_sla", "Decisions waiting past their deadline"
    OVER_BUDGET = "over_budget", "Over its daily budget"
    REVIEW_OVERDUE = "review_overdue", "Review overdue"


class AlertSeverity(models.TextChoices):
    """Ordered: a repeat of an open alert at a higher severity is news again."""

    INFO = "info", "For information"
    WARNING = "warning", "Needs attention"
    CRITICAL = "critical", "Urgent"


SEVERITY_RANK: dict[str, int] = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}


class Alert(models.Model):
    """Something an operator should know about, found by a detector
    (approvals.monitoring.detectors). Open until someone acknowledges it; while open,
    the same finding is counted on it instead of raised again (approvals.monitoring.alerts)."""

    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices)
    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="alerts")
    agent = models.ForeignKey(
        "agents.Agent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alerts",
        help_text="Empty for an alert about the department's queue as a whole.",
    )
    key = models.CharField(max_length=100, help_text="What makes two findings the same: kind and subject.")
    message = models.TextField(help_text="In plain words, as the owner and the leads are told.")
    raised_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, help_text="When a detector last found it again.")
    repeats = models.PositiveIntegerField(
        default=0, help_text="Times found again while open, or in the quiet period after it was acknowledged."
    )
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owner and the leads were last told: raised, or found graver."
    )
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        indexes = [models.Index(fields=["department", "acknowledged_at"], name="alert_department_open_idx")]
        constraints = [
            # One open alert per finding: concurrent detector runs cannot raise it twice.
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(acknowledged_at__isnull=True), name="one_open_alert_per_key"
            ),
            models.CheckConstraint(condition=models.Q(kind__in=AlertKind.values), name="alert_kind_valid"),
            models.CheckConstraint(condition=models.Q(severity__in=AlertSeverity.values), name="alert_severity_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.agent or self.department}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class Heartbeat(models.Model):
    """The last sign of life of a background process (a Celery worker or
    beat), read by /healthz. In the database, so it is readable while Redis is down."""

    role = models.CharField(max_length=20, unique=True)
    host = models.CharField(max_length=255, blank=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.role} on {self.host or '?'} at {self.beat_at:%H:%M:%S}"
