from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import jsonschema
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from approvals import amounts
from approvals.digests import payload_digest
from approvals.lifecycle import Status


class Department(models.Model):
    """A team whose leads decide the actions routed to it."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(unique=True)
    leads = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="led_departments", blank=True)
    backup_approvers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="backup_departments",
        blank=True,
        help_text="Decide this department's actions once they are past the decision SLA.",
    )
    decision_sla_minutes = models.PositiveIntegerField(
        default=240, help_text="How long an action may wait for a decision before it escalates."
    )
    slack_channel = models.CharField(
        max_length=80,
        blank=True,
        help_text="Slack channel ID (e.g. C0123ABCD) where its new pending actions are posted; empty: none.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def decision_sla(self) -> timedelta:
        return timedelta(minutes=self.decision_sla_minutes)


class Risk(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class PreviewTemplate(models.TextChoices):
    """The preview templates shipped in templates/approvals/previews/."""

    AUTOMATIC = "", "Automatic (by the payload's fields)"
    GENERIC = "generic", "Generic: every field from the schema"
    EMAIL = "email", "Email: to, subject, body"
    REFUND = "refund", "Money: refund or payment"
    RECORD_DELETION = "record_deletion", "Record deletion"


class Executor(models.TextChoices):
    WEBHOOK = "webhook", "Signed webhook"
    AGENT = "agent", "Agent executes and reports"


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def validate_json_schema(value: object) -> None:
    if not isinstance(value, dict):
        raise ValidationError("The payload schema must be a JSON object.")
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as error:
        raise ValidationError(f"Not a valid JSON Schema: {error.message}") from error


validate_payload_path = RegexValidator(amounts.PATH, "A dotted path into the payload, such as amount or refund.amount.")
validate_currency_code = RegexValidator(amounts.CURRENCY, "A three-letter currency code, such as EUR.")


class ActionType(models.Model):
    """A capability the gateway knows, such as payments.refund."""

    slug = models.CharField(max_length=100, unique=True, help_text="Dotted name agents use, e.g. payments.refund.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.MEDIUM)
    reversible = models.BooleanField(default=False)
    reversal_window_minutes = models.PositiveIntegerField(
        default=0, help_text="How long after success a lead may still roll the action back."
    )
    undo_window_seconds = models.PositiveIntegerField(
        default=0, help_text="Auto-approved reversible actions wait this long before dispatch, so a lead can veto."
    )
    payload_schema = models.JSONField(
        default=dict, blank=True, validators=[validate_json_schema], help_text="JSON Schema the payload must match."
    )
    amount_path = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_payload_path],
        help_text="Where the money this action moves lives in its payload, as a dotted path (amount, "
        "refund.amount). The action's amount, and every limit, is read from there. Empty: it moves no money.",
    )
    currency_path = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_payload_path],
        help_text="Where the currency code lives in the payload (e.g. currency). Or set a fixed currency.",
    )
    currency = models.CharField(
        max_length=3,
        blank=True,
        validators=[validate_currency_code],
        help_text="The currency, when it is always the same (e.g. EUR) and the payload does not say.",
    )
    executor = models.CharField(max_length=10, choices=Executor.choices, default=Executor.AGENT)
    webhook_url = models.URLField(blank=True, help_text="Where approved actions are POSTed (webhook executor).")
    rollback_url = models.URLField(blank=True, help_text="Where rollbacks are POSTed (webhook executor).")
    webhook_secret = models.CharField(
        max_length=100, default=new_webhook_secret, help_text="Signs webhook requests (HMAC-SHA256)."
    )
    webhook_timeout_seconds = models.PositiveIntegerField(default=10)
    max_attempts = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1)],
        help_text="Webhook calls per dispatch (or rollback) before it fails; 5xx and time-outs are retried.",
    )
    report_timeout_minutes = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],
        help_text="Agent executor: how long the agent has to report a result (or a rollback's) before it fails.",
    )
    routing_department = models.ForeignKey(
        Department,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="routed_action_types",
        help_text="Who decides these actions. Empty: the proposing agent's department.",
    )
    expiry_hours = models.PositiveIntegerField(
        default=24, validators=[MinValueValidator(1)], help_text="Undecided actions expire after this long."
    )
    preview_template = models.CharField(
        max_length=20,
        blank=True,
        choices=PreviewTemplate.choices,
        help_text="How the queue and the action page show a payload of this type (approvals/previews.py). "
        "Automatic picks by the payload's fields: an email (to, subject, body), money (the amount path), "
        "a record deletion (record_id), else every field from the schema.",
    )

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=models.Q(risk__in=Risk.values), name="action_type_risk_valid"),
            models.CheckConstraint(condition=models.Q(executor__in=Executor.values), name="action_type_executor_valid"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def has_permanent_gate(self) -> bool:
        """High and critical capabilities always wait for a human."""
        return self.risk in (Risk.HIGH, Risk.CRITICAL)

    @property
    def approvals_required(self) -> int:
        return 2 if self.risk == Risk.CRITICAL else 1

    @property
    def moves_money(self) -> bool:
        return bool(self.amount_path)

    def money_in(self, payload: Any) -> amounts.Money:
        """The amount and currency of a payload of this type (raises amounts.AmountError)."""
        return amounts.read_money(
            payload, amount_path=self.amount_path, currency_path=self.currency_path, currency=self.currency
        )

    def clean(self) -> None:
        errors = {}
        if self.executor == Executor.WEBHOOK and not self.webhook_url:
            errors["webhook_url"] = "A webhook executor needs a URL."
        if self.currency_path and self.currency:
            errors["currency"] = "Either a currency path or a fixed currency, not both."
        if (self.currency_path or self.currency) and not self.amount_path:
            errors["amount_path"] = "Say where the amount lives before saying where its currency does."
        if errors:
            raise ValidationError(errors)


class Verdict(models.TextChoices):
    """What the policy said when the action was proposed."""

    APPROVED = "approved", "Approved by policy"
    PENDING = "pending", "Needs a human"
    SHADOWED = "shadowed", "Shadowed (observer)"
    BLOCKED = "blocked", "Blocked"


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
        help_text="The key that made the proposal: its hash signs the callbacks (approvals.callbacks).",
    )

    objects = ActionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["department", "status", "created_at"], name="action_queue_idx"),
            # A department's pending actions in queue order (approvals.queue.URGENCY):
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
            # The queue's counts per filter (approvals.queue_filters.facets): an index-only
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


class DecisionVerdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    EDIT_APPROVE = "edit_approve", "Edit and approve"
    REJECT = "reject", "Reject"
    VETO = "veto", "Veto (in the undo window)"
    WOULD_APPROVE = "would_approve", "Would approve (shadow)"
    WOULD_REJECT = "would_reject", "Would reject (shadow)"


# An approval, with or without an edit: what the count of approvals is made of.
APPROVING = (DecisionVerdict.APPROVE, DecisionVerdict.EDIT_APPROVE)


class DecisionQuerySet(models.QuerySet["Decision"]):
    def standing_on(self, digest: str) -> DecisionQuerySet:
        """The decisions that still count on the payload with `digest` (Decision.stands_on)."""
        return self.filter(~models.Q(verdict__in=APPROVING) | models.Q(payload_digest=digest))


class Decision(models.Model):
    """One human's verdict on one action."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    verdict = models.CharField(max_length=15, choices=DecisionVerdict.choices)
    comment = models.TextField(blank=True)
    edited_payload = models.JSONField(null=True, blank=True)
    payload_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="An approval's: sha256 of the canonical JSON of the exact payload it approved (approvals.digests).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DecisionQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # One decision per person per payload: a critical action's two
            # approvals of one payload come from two people by construction, and
            # an edit by another lead puts up a new payload, which someone who
            # approved the old one may decide on too (services._add_decision).
            models.UniqueConstraint(
                fields=["action", "user", "payload_digest"], name="one_decision_per_user_action_and_payload"
            ),
            models.CheckConstraint(
                condition=models.Q(verdict__in=DecisionVerdict.values), name="decision_verdict_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.get_verdict_display().lower()}"

    def stands_on(self, digest: str) -> bool:
        """Still counts on the payload with this digest: a rejection, veto or
        mark always; an approval only of that payload (an edit since made it stale)."""
        return self.verdict not in APPROVING or self.payload_digest == digest


class ExecutionKind(models.TextChoices):
    DISPATCH = "dispatch", "Dispatch"
    ROLLBACK = "rollback", "Rollback"


class ExecutionOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    RETRYING = "retrying", "Failed, will retry"


class Execution(models.Model):
    """One attempt to carry out (or roll back) an approved action."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="executions")
    kind = models.CharField(max_length=10, choices=ExecutionKind.choices, default=ExecutionKind.DISPATCH)
    attempt = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=ExecutionOutcome.choices, default=ExecutionOutcome.RUNNING)
    response = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    undo = models.JSONField(null=True, blank=True, help_text="What the target needs to roll this back.")
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When a retrying attempt's next one is due.")

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(fields=["action", "kind", "attempt"], name="one_execution_per_attempt"),
            models.CheckConstraint(condition=models.Q(kind__in=ExecutionKind.values), name="execution_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(outcome__in=ExecutionOutcome.values), name="execution_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.attempt}: {self.outcome}"


class PromotionPolicy(models.Model):
    """Thresholds for earning and losing autonomy. The one without a
    department is the global default; a department may override it."""

    department = models.OneToOneField(
        Department,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="promotion_policy",
        help_text="Empty for the global default.",
    )
    window_days = models.PositiveIntegerField(default=7, validators=[MinValueValidator(1)])
    min_decisions = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    promote_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.950"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
    )
    demote_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.900"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
    )
    failure_limit = models.PositiveIntegerField(
        default=3, validators=[MinValueValidator(1)], help_text="Consecutive failed dispatches that suspend an agent."
    )
    anomaly_multiplier = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("10.00"),
        validators=[MinValueValidator(Decimal(1))],
        help_text="Alert when an agent acts this many times faster than its normal rate.",
    )
    auto_promote = models.BooleanField(default=True, help_text="Off: promotions are only recommended to a lead.")
    require_lower_bound = models.BooleanField(
        default=False, help_text="Require the approval rate's 95 % interval lower bound to clear the threshold."
    )

    class Meta:
        verbose_name_plural = "promotion policies"
        constraints = [
            # At most one global default (department empty).
            models.UniqueConstraint(
                Coalesce("department", models.Value(0)),
                name="one_promotion_policy_per_scope",
                violation_error_message="There is already a promotion policy for this scope (global or department).",
            ),
            models.CheckConstraint(
                condition=models.Q(demote_threshold__lte=models.F("promote_threshold")),
                name="demote_threshold_not_above_promote",
                violation_error_message="The demote threshold cannot be above the promote threshold.",
            ),
        ]

    def __str__(self) -> str:
        return f"Promotion policy: {self.department or 'global default'}"

    @classmethod
    def for_department(cls, department: Department | None) -> PromotionPolicy:
        """The department's override, else the global default (created on first use)."""
        if department is not None:
            override = cls.objects.filter(department=department).first()
            if override is not None:
                return override
        policy, _ = cls.objects.get_or_create(department=None)
        return policy


class TierChangeReason(models.TextChoices):
    PROMOTED = "promoted", "Promoted"  # on its record, or by a person: the explanation says which
    DEMOTED = "demoted", "Demoted"
    NEW_VERSION = "new_version", "New agent version"
    OVER_CAP = "over_cap", "Above its action type's cap"


class TierChange(models.Model):
    """One move of a grant's trust tier, with the evidence it was made on."""

    grant = models.ForeignKey("agents.Grant", on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.CharField(max_length=12)
    to_tier = models.CharField(max_length=12)
    reason = models.CharField(max_length=12, choices=TierChangeReason.choices)
    explanation = models.TextField(help_text="The evidence in words, as the owner and the leads were told.")
    metrics = models.JSONField(default=dict, help_text="The grant's metrics when the change was made.")
    automatic = models.BooleanField(
        default=True, help_text="Made by the evaluation's rules; off when a person promoted on a recommendation."
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who promoted, or who asked for the evaluation; empty for the hourly run.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["grant", "-created_at"], name="tier_change_grant_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(reason__in=TierChangeReason.values), name="tier_change_reason_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.grant}: {self.from_tier} → {self.to_tier} ({self.reason})"


class GatewayState(models.Model):
    """The single row holding the global pause (the kill switch for every agent)."""

    paused = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = "gateway state"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="gateway_state_singleton")]

    def __str__(self) -> str:
        return "Gateway paused" if self.paused else "Gateway running"

    @classmethod
    def current(cls) -> GatewayState:
        state, _ = cls.objects.get_or_create(id=1)
        return state


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
    def for_user(cls, user: Any) -> NotificationPreference:
        """The user's preference; an unsaved default when they never chose one."""
        return cls.objects.filter(user=user).first() or cls(user=user)


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


SEVERITY_RANK = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}


class Alert(models.Model):
    """Something an operator should know about, found by a detector
    (approvals.detectors). Open until someone acknowledges it; while open,
    the same finding is counted on it instead of raised again (approvals.alerts)."""

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


class CallbackState(models.TextChoices):
    QUEUED = "queued", "Queued"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Callback(models.Model):
    """One signed POST to an action's callback_url, announcing one status it
    moved to. Written in the transaction of the move (an outbox row), sent by
    a task after commit, retried with backoff; the sweep re-queues what is
    due and was lost. Each attempt is also an audit event."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="callbacks")
    status = models.CharField(max_length=20, choices=Status.choices, help_text="The status announced.")
    event = models.CharField(max_length=60, help_text="The audit verb of the move, e.g. action.approved.")
    body = models.JSONField(default=dict, help_text="What is POSTed, frozen at the move: every attempt sends it.")
    state = models.CharField(max_length=10, choices=CallbackState.choices, default=CallbackState.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_http_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="callback_due_idx", condition=models.Q(state="queued")),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=CallbackState.values), name="callback_state_valid"),
        ]

    def __str__(self) -> str:
        return f"callback {self.status} of {self.action_id} ({self.state})"


class DecisionLink(models.Model):
    """One approve or reject link in one lead's email (approvals/decision_links.py).

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
