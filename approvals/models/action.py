"""Actions: one proposal of one agent, from the policy's verdict to its outcome."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from approvals.models.action_type import ActionType
from approvals.models.department import Department
from approvals.rules.digests import payload_digest
from approvals.rules.lifecycle import Status
from approvals.vocabulary import Verdict


class ActionQuerySet(models.QuerySet["Action"]):
    def pending(self) -> ActionQuerySet:
        return self.filter(status=Status.PENDING)

    def overdue(self, now: datetime) -> ActionQuerySet:
        """Pending past the SLA deadline and not yet escalated: due for the backup approvers."""
        return self.filter(status=Status.PENDING, escalated_at__isnull=True, sla_deadline__lte=now)


class Action(models.Model):
    """One proposal of one agent. Its status moves only through approvals.services."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="actions")
    action_type = models.ForeignKey(ActionType, on_delete=models.PROTECT, related_name="actions")
    grant = models.ForeignKey("agents.Grant", on_delete=models.SET_NULL, null=True, blank=True, related_name="actions")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="actions")
    status = models.CharField(max_length=20, choices=Status.choices, editable=False)
    payload = models.JSONField(default=dict)
    approved_payload = models.JSONField(
        null=True, blank=True, help_text="The payload as approved, if a lead edited it."
    )
    reasoning = models.TextField()
    confidence = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
    )
    amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Read from the payload at its action type's amount path: the proposal's, then each edit's.",
    )
    currency = models.CharField(max_length=3, blank=True, help_text="Of the amount, as its action type says.")
    context = models.JSONField(default=dict, blank=True)
    # NULL, not "", for "no key": the per-agent unique constraint skips NULLs.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True, help_text="Hash of the proposal body.")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    verdict_code = models.CharField(max_length=40, blank=True, help_text="Machine-readable rule, e.g. limit_exceeded.")
    verdict_reason = models.TextField(blank=True)
    priority = models.IntegerField(default=0, help_text="Higher is more urgent.")
    sla_deadline = models.DateTimeField(null=True, blank=True)
    routed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the routing task recorded the routing and notified the leads."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    dispatch_after = models.DateTimeField(null=True, blank=True, help_text="End of the undo window.")
    # Set by the proposal from the same clock reading as its SLA deadline and expiry.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    decided_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    callback_url = models.URLField(
        max_length=2000, blank=True, help_text="Where the agent asked to be told of each decision and outcome."
    )
    callback_key = models.ForeignKey(
        "agents.AgentKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The key that made the proposal: its hash signs the callbacks (approvals.dispatch.callbacks).",
    )

    objects = ActionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["department", "status", "created_at"], name="action_queue_idx"),
            # A department's pending actions in queue order (approvals.reads.queue.URGENCY):
            # a page is a short walk of it, the counters an index-only scan.
            models.Index(
                "department",
                models.ExpressionWrapper(
                    models.Q(escalated_at__isnull=False), output_field=models.BooleanField()
                ).desc(),
                models.F("priority").desc(),
                "sla_deadline",  # ascending, nulls last: PostgreSQL's default, as the queue sorts
                "created_at",
                "id",
                name="action_pending_queue_idx",
                condition=models.Q(status="pending"),
                include=["escalated_at"],
            ),
            # The queue's counts per filter (approvals.reads.queue_filters.facets): an index-only
            # GROUP BY of a department's pending rows by agent and action type.
            models.Index(
                fields=["department", "agent", "action_type"],
                name="action_pending_facets_idx",
                condition=models.Q(status="pending"),
            ),
            # An agent's own actions, and its daily counters per action type.
            models.Index(fields=["agent", "action_type", "created_at"], name="action_agent_idx"),
            models.Index(fields=["status", "expires_at"], name="action_expiry_idx"),
            # Trust metrics: a grant's (or a department's) actions in a rolling window.
            models.Index(fields=["grant", "created_at"], name="action_grant_window_idx"),
            models.Index(fields=["department", "created_at"], name="action_department_window_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="idempotency_key_unique_per_agent",
            ),
            models.CheckConstraint(condition=models.Q(status__in=Status.values), name="action_status_valid"),
            models.CheckConstraint(condition=models.Q(verdict__in=Verdict.values), name="action_verdict_valid"),
            models.CheckConstraint(
                condition=models.Q(confidence__isnull=True) | models.Q(confidence__gte=0, confidence__lte=1),
                name="action_confidence_0_to_1",
            ),
            models.CheckConstraint(
                condition=models.Q(amount__isnull=True) | models.Q(amount__gte=0), name="action_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action_type.slug} by {self.agent.slug} ({self.status})"

    @property
    def effective_payload(self) -> dict:
        """What is executed: the lead's edit if there is one, else the proposal."""
        return self.approved_payload if self.approved_payload is not None else self.payload

    @property
    def standing_digest(self) -> str:
        """The digest of the payload standing for approval: what a lead's form carries."""
        return payload_digest(self.effective_payload)
