"""Action types: the capabilities the gateway knows, their risk, schema, money and executor."""

from __future__ import annotations

import secrets
from typing import Any

import jsonschema
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from agents import fresh
from approvals.models.department import Department
from approvals.rules import amounts
from approvals.vocabulary import Risk


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
        help_text="How the queue and the action page show a payload of this type (approvals/reads/previews.py). "
        "Automatic picks by the payload's fields: an email (to, subject, body), money (the amount path), "
        "a record deletion (record_id), else every field from the schema.",
    )

    # Cached by the API (agents.fresh): a bulk update announces, as a save does.
    objects = fresh.AnnouncingQuerySet["ActionType"].as_manager()

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
