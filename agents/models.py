from __future__ import annotations

import hashlib
import secrets
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from agents import fresh
from agents.vocabulary import AgentStatus, Tier

KEY_TYPE_PREFIX = "csk_"  # recognisable in logs and secret scanners


REVIEW_INTERVAL = timedelta(days=30)  # an agent is reviewed monthly unless a reviewer sets another date


def a_review_interval_from_today() -> date:
    return timezone.localdate() + REVIEW_INTERVAL


class Agent(models.Model):
    """A registered program that proposes actions."""

    slug = models.SlugField(unique=True, help_text="Short name used in URLs and keys, e.g. refund-bot.")
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="owned_agents",
        help_text="The person responsible for this agent. They may not approve its actions.",
    )
    department = models.ForeignKey("approvals.Department", on_delete=models.PROTECT, related_name="agents")
    purpose = models.TextField(help_text="What this agent is for, in a sentence or two.")
    status = models.CharField(max_length=12, choices=AgentStatus.choices, default=AgentStatus.ACTIVE)
    suspended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        help_text="Who suspended it, while it is suspended; empty when the system did (the circuit breaker, "
        "a detector). Its owner may lift only a suspension they imposed themselves.",
    )
    version = models.CharField(max_length=50, blank=True, help_text="Release of the agent's code or model.")
    failed_dispatches_in_a_row = models.PositiveIntegerField(
        default=0, editable=False, help_text="The circuit breaker's count; a success or a resume resets it."
    )
    next_review_on = models.DateField(
        null=True,
        blank=True,
        default=a_review_interval_from_today,
        help_text="When a person next reviews this agent (keep, adjust or retire). Empty once it is retired.",
    )
    suspend_on_anomaly = models.BooleanField(
        default=False,
        help_text="Suspend this agent automatically when it acts far faster than its usual pace, "
        "not only alert its owner and leads.",
    )
    daily_token_budget = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Alert when the tokens it reports (context.tokens_used) pass this in a day. Empty: no budget.",
    )
    daily_cost_budget = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Alert when the cost it reports (context.cost) passes this in a day. Empty: no budget.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Cached by the API (agents.fresh): a bulk update announces, as a save does.
    objects = fresh.AnnouncingQuerySet["Agent"].as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=AgentStatus.values), name="agent_status_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == AgentStatus.ACTIVE

    # The agent API authenticates agents, not users: DRF asks request.user this.
    is_authenticated = True


def hash_key(raw_key: str) -> str:
    # A fast hash is right here: keys carry 256 random bits, so there is
    # nothing to brute-force, and every API request pays for this.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class AgentKeyQuerySet(fresh.AnnouncingQuerySet["AgentKey"]):
    def usable(self) -> AgentKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class AgentKey(models.Model):
    """A credential of one agent. Only the public prefix and a hash are kept;
    the full key is shown once, when it is issued."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    label = models.CharField(max_length=100, blank=True, help_text="Where this key is used, e.g. 'production'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Leave empty for a key that never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AgentKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "agent key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.agent.slug})"

    @staticmethod
    def generate() -> tuple[str, str]:
        """A new raw key and its public prefix: csk_<8 chars>_<43 chars of 32 random bytes>."""
        prefix = KEY_TYPE_PREFIX + secrets.token_hex(4)
        return f"{prefix}_{secrets.token_urlsafe(32)}", prefix

    @property
    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class Grant(models.Model):
    """One agent may propose one action type, at a trust tier, within limits."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="grants")
    action_type = models.ForeignKey("approvals.ActionType", on_delete=models.PROTECT, related_name="grants")
    tier = models.CharField(max_length=12, choices=Tier.choices, default=Tier.OBSERVER)
    max_amount_per_action = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Hard limit: a larger amount is blocked. Empty means no limit.",
    )
    max_actions_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Hard limit on proposals per day. Empty means no limit."
    )
    max_amount_per_day = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Hard limit on the day's total amount. Empty means no limit.",
    )
    auto_approve_max_amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Executor tier: larger amounts wait for a human. Empty means no limit.",
    )
    min_confidence = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.800"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="Executor tier: proposals less confident than this wait for a human.",
    )
    tier_changed_at = models.DateTimeField(
        default=timezone.now, help_text="Also where the trust evaluation's window starts: evidence is per tier."
    )
    # NULL: not recorded yet; the next trust evaluation records the agent's current version.
    tier_agent_version = models.CharField(  # noqa: DJ001
        max_length=50,
        null=True,
        blank=True,
        editable=False,
        help_text="The agent's version when this tier was set: another version is a new release.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent__name", "action_type__slug"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "action_type"], name="one_grant_per_agent_and_action_type"),
            models.CheckConstraint(condition=models.Q(tier__in=Tier.values), name="grant_tier_valid"),
            models.CheckConstraint(
                condition=models.Q(min_confidence__gte=0, min_confidence__lte=1), name="grant_min_confidence_0_to_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} → {self.action_type.slug} ({self.tier})"

    def clean(self) -> None:
        if self.tier == Tier.EXECUTOR and self.action_type_id and self.action_type.has_permanent_gate:
            raise ValidationError(
                {"tier": f"{self.action_type.get_risk_display()} action types never go past contributor."}
            )


class ReviewOutcome(models.TextChoices):
    KEEP = "keep", "Keep as it is"
    ADJUST = "adjust", "Keep, with adjustments"
    RETIRE = "retire", "Retire"


class AgentReview(models.Model):
    """A person's periodic look at an agent: is it still doing what it is for?"""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_reviews")
    outcome = models.CharField(max_length=10, choices=ReviewOutcome.choices)
    notes = models.TextField(help_text="What the reviewer looked at and why they decided so.")
    next_review_on = models.DateField(null=True, blank=True, help_text="The date this review set; empty on retiring.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(outcome__in=ReviewOutcome.values), name="review_outcome_valid"),
        ]

    def __str__(self) -> str:
        return f"Review of {self.agent.slug}: {self.outcome}"
