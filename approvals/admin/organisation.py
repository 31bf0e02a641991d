"""Departments and action types in the admin, each edit audited."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest
from django.utils.html import format_html

from approvals.admin.preview import PreviewTheEffectMixin
from approvals.models import (
    ActionType,
    Department,
    new_webhook_secret,
)
from approvals.replay import changes
from audit.admin import HIDDEN, HIDDEN_CHANGED, AuditedAdminMixin


@admin.register(Department)
class DepartmentAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "lead_names", "decision_sla_minutes", "slack_channel")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("leads", "backup_approvers")
    ordering = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Department]:
        return super().get_queryset(request).prefetch_related("leads")

    @admin.display(description="leads")
    def lead_names(self, department: Department) -> str:
        return ", ".join(sorted(lead.get_username() for lead in department.leads.all())) or "—"

    def audit_scope(self, obj: Department) -> dict[str, int | None]:
        return {"department_id": obj.pk}


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows the value indented, so a schema can be read and edited."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


def _https_by_default(db_field: models.Field, **kwargs: Any) -> forms.Field | None:
    # A receiver's address typed without a scheme is meant to be https.
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ActionTypeForm(forms.ModelForm):
    payload_schema = PrettyJSONField(
        required=False,
        label="Payload schema",
        widget=forms.Textarea(attrs={"rows": 14, "cols": 80, "style": "font-family: monospace"}),
        error_messages={"invalid": "This is not valid JSON. Check the brackets, quotes and commas."},
        help_text='JSON Schema the payload must match, e.g. {"type": "object", "required": ["amount"]}. '
        "Empty: any payload is accepted.",
    )

    class Meta:
        model = ActionType
        fields = (
            "slug",
            "name",
            "description",
            "risk",
            "routing_department",
            "expiry_hours",
            "reversible",
            "reversal_window_minutes",
            "undo_window_seconds",
            "payload_schema",
            "amount_path",
            "currency_path",
            "currency",
            "executor",
            "webhook_url",
            "rollback_url",
            "webhook_timeout_seconds",
            "max_attempts",
            "report_timeout_minutes",
        )
        formfield_callback = _https_by_default

    def clean_payload_schema(self) -> Any:
        # An emptied textarea means "no schema"; the column holds {} for that, never NULL.
        value = self.cleaned_data.get("payload_schema")
        return {} if value is None else value


@admin.register(ActionType)
class ActionTypeAdmin(PreviewTheEffectMixin, AuditedAdminMixin, admin.ModelAdmin):
    form = ActionTypeForm
    replay_change = staticmethod(changes.of_action_type)
    list_display = (
        "slug",
        "name",
        "risk",
        "reversible",
        "amount_path",
        "executor",
        "routing_department",
        "expiry_hours",
    )
    list_filter = ("risk", "executor", "reversible", "routing_department")
    search_fields = ("slug", "name", "description")
    list_select_related = ("routing_department",)
    ordering = ("slug",)
    audit_secret_fields = ("webhook_secret",)
    actions = ("regenerate_webhook_secret",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # see _https_by_default
    fieldsets = (
        (None, {"fields": ("slug", "name", "description", "risk", "routing_department", "expiry_hours")}),
        ("Reversal", {"fields": ("reversible", "reversal_window_minutes", "undo_window_seconds")}),
        ("Payload", {"fields": ("payload_schema", "preview_template")}),
        (
            "Money",
            {
                "fields": ("amount_path", "currency_path", "currency"),
                "description": "Where the money this action moves lives in its payload. The action's amount is "
                "read from there on the proposal and on every edit, and every limit of a grant is checked "
                "against it; an amount the agent declares must be the same.",
            },
        ),
        (
            "Execution",
            {
                "fields": (
                    "executor",
                    "webhook_url",
                    "rollback_url",
                    "webhook_secret_shown",
                    "webhook_timeout_seconds",
                    "max_attempts",
                    "report_timeout_minutes",
                )
            },
        ),
    )
    # The secret is generated, never typed: it changes only by the "regenerate" action.
    readonly_fields = ("webhook_secret_shown",)

    @admin.display(description="webhook secret")
    def webhook_secret_shown(self, action_type: ActionType) -> str:
        if action_type.pk is None:
            return "Generated when you save."
        return format_html(
            "<code>{}</code><br>Give it to the receiving system so it can check the HMAC-SHA256 signature "
            "of each request. To replace it, use the action “Regenerate webhook secret” on the list.",
            action_type.webhook_secret,
        )

    def audit_scope(self, obj: ActionType) -> dict[str, int | None]:
        return {"department_id": obj.routing_department_id}

    @admin.action(description="Regenerate webhook secret", permissions=["change"])
    def regenerate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[ActionType]) -> None:
        action_types = list(queryset)
        with transaction.atomic():
            for action_type in action_types:
                action_type.webhook_secret = new_webhook_secret()
                action_type.save(update_fields=["webhook_secret"])
                self.audit_record(
                    request,
                    action_type,
                    "webhook_secret_regenerated",
                    {"webhook_secret": HIDDEN},
                    {"webhook_secret": HIDDEN_CHANGED},
                )
        self.message_user(
            request,
            f"New webhook secret for {len(action_types)} action type(s). "
            "Their receivers reject requests until they are given the new secret.",
            messages.WARNING,
        )
