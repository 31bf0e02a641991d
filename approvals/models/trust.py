"""Earned autonomy's records: a department's promotion policy and every tier change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from approvals.models.department import Department
from approvals.vocabulary import TierChangeReason


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

    # The one place a department's policy is looked up: these two, for one
    # department or for a run over many, and window_start for its evidence.

    @classmethod
    def for_department(cls, department: Department | int | None) -> PromotionPolicy:
        """The department's override, else the global default (created on first use)."""
        if department is not None:
            department_id = department.pk if isinstance(department, Department) else department
            override = cls.objects.filter(department_id=department_id).first()
            if override is not None:
                return override
        policy, _ = cls.objects.get_or_create(department=None)
        return policy

    @classmethod
    def by_department(cls) -> Callable[[int | None], PromotionPolicy]:
        """Every department's policy read at once, for a run over many: by department id."""
        overrides = {policy.department_id: policy for policy in cls.objects.filter(department__isnull=False)}
        default = cls.for_department(None)
        return lambda department_id: overrides.get(department_id, default)

    def window_start(self, now: datetime) -> datetime:
        """Where the evidence of this policy starts: every approval rate shown or acted on uses it."""
        return now - timedelta(days=self.window_days)


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
