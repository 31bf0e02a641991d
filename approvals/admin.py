"""Departments, action types, promotion thresholds and the global pause are
configured here, each edit audited. Actions, decisions and executions are
shown read-only: only approvals.services writes them. The agents' and
grants' admins (agents.admin) are re-registered here so that a tier changed
there goes through approvals.autonomy.trust.set_tier (imports flow approvals → agents)."""

from __future__ import annotations

import json
from typing import Any

from axes.models import AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import F, QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest
from django.utils.html import format_html

from agents import admin as agents_admin
from agents.models import Agent, Grant
from approvals.autonomy import trust
from approvals.models import (
    Action,
    ActionType,
    Alert,
    Decision,
    Department,
    Execution,
    GatewayState,
    NotificationPreference,
    PromotionPolicy,
    SlackIdentity,
    TierChange,
    new_webhook_secret,
)
from approvals.services import gateway
from audit.admin import HIDDEN, HIDDEN_CHANGED, AuditedAdminMixin, ReadOnlyAdminMixin, audit_trail_link, pretty_json

# ------------------------------------------------------------------ departments


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


# ------------------------------------------------------------------ action types


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
class ActionTypeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = ActionTypeForm
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


# ------------------------------------------------------------------ actions (read-only)


class DecisionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Decision
    fields = ("created_at", "user", "verdict", "comment", "edited_payload")
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Decision]:
        return super().get_queryset(request).select_related("user")


class ExecutionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Execution
    fields = ("kind", "attempt", "started_at", "finished_at", "outcome", "error", "response")
    readonly_fields = fields
    extra = 0


@admin.register(Action)
class ActionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """View only: an action's status moves only through approvals.services."""

    inlines = (DecisionInline, ExecutionInline)
    list_display = ("created_at", "action_type", "agent", "department", "status", "verdict", "amount", "confidence")
    list_filter = ("status", "verdict", "department", "action_type__risk", "action_type", "created_at")
    search_fields = ("id__exact", "agent__slug", "agent__name", "action_type__slug", "reasoning", "idempotency_key")
    list_select_related = ("agent", "action_type", "department")
    ordering = ("-created_at",)
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("id", "status", "agent", "action_type", "department", "grant", "trail")}),
        ("Proposal", {"fields": ("amount", "confidence", "reasoning", "payload_json", "context_json")}),
        ("Policy", {"fields": ("verdict", "verdict_code", "verdict_reason", "priority")}),
        ("Decision", {"fields": ("approved_payload_json", "decided_at")}),
        (
            "Timing",
            {"fields": ("created_at", "sla_deadline", "escalated_at", "expires_at", "dispatch_after", "updated_at")},
        ),
        ("Idempotency", {"fields": ("idempotency_key", "request_fingerprint"), "classes": ("collapse",)}),
    )
    readonly_fields = ("trail", "payload_json", "context_json", "approved_payload_json")

    @admin.display(description="payload")
    def payload_json(self, action: Action) -> str:
        return pretty_json(action.payload)

    @admin.display(description="context")
    def context_json(self, action: Action) -> str:
        return pretty_json(action.context)

    @admin.display(description="approved payload")
    def approved_payload_json(self, action: Action) -> str:
        return pretty_json(action.approved_payload) if action.approved_payload is not None else "—"

    @admin.display(description="audit trail")
    def trail(self, action: Action) -> str:
        return audit_trail_link(object_type=action._meta.label_lower, object_id=str(action.pk))


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "action", "user", "verdict")
    list_filter = ("verdict", "created_at")
    search_fields = ("user__username", "comment", "action__agent__slug", "action__action_type__slug")
    list_select_related = ("action__agent", "action__action_type", "user")
    ordering = ("-created_at",)


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "action", "kind", "attempt", "outcome", "finished_at")
    list_filter = ("kind", "outcome", "started_at")
    search_fields = ("error", "action__agent__slug", "action__action_type__slug")
    list_select_related = ("action__agent", "action__action_type")
    ordering = ("-started_at",)


# ------------------------------------------------------------------ promotion policies


class PromotionPolicyForm(forms.ModelForm):
    """The model's constraints, as errors an admin can act on."""

    class Meta:
        model = PromotionPolicy
        fields = (
            "department",
            "window_days",
            "min_decisions",
            "promote_threshold",
            "demote_threshold",
            "failure_limit",
            "anomaly_multiplier",
            "auto_promote",
            "require_lower_bound",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        promote, demote = cleaned.get("promote_threshold"), cleaned.get("demote_threshold")
        if promote is not None and demote is not None and demote > promote:
            self.add_error("demote_threshold", "The demotion threshold cannot be above the promotion threshold.")
        if "department" in cleaned:
            others = PromotionPolicy.objects.filter(department=cleaned["department"]).exclude(pk=self.instance.pk)
            if others.exists():
                taken = "This department already has" if cleaned["department"] else "There already is a global default:"
                self.add_error("department", f"{taken} a promotion policy. Edit that one instead.")
        return cleaned


@admin.register(PromotionPolicy)
class PromotionPolicyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = PromotionPolicyForm
    list_display = (
        "__str__",
        "window_days",
        "min_decisions",
        "promote_threshold",
        "demote_threshold",
        "failure_limit",
        "anomaly_multiplier",
        "auto_promote",
        "require_lower_bound",
    )
    list_filter = ("auto_promote", "require_lower_bound")
    search_fields = ("department__name",)
    list_select_related = ("department",)
    ordering = (F("department__name").asc(nulls_first=True),)  # the global default first

    def audit_scope(self, obj: PromotionPolicy) -> dict[str, int | None]:
        return {"department_id": obj.department_id}


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """View only: tiers move through approvals.autonomy.trust, each move with its evidence."""

    list_display = ("created_at", "grant", "from_tier", "to_tier", "reason", "automatic", "changed_by")
    list_filter = ("reason", "automatic", "to_tier", "created_at")
    search_fields = ("grant__agent__slug", "grant__action_type__slug")
    list_select_related = ("grant__agent", "grant__action_type", "changed_by")
    ordering = ("-created_at", "-id")


# ------------------------------------------------------------------ the global pause


class GatewayStateForm(forms.ModelForm):
    why = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Reason",
        help_text="Why you pause or resume the gateway. Required when you change “paused”; "
        "it is shown with the state and kept in the audit trail.",
    )

    class Meta:
        model = GatewayState
        fields = ("paused",)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "paused" in self.changed_data and not cleaned.get("why", "").strip():
            doing = "pausing" if cleaned.get("paused") else "resuming"
            self.add_error("why", f"Say why you are {doing} the gateway.")
        return cleaned


@admin.register(GatewayState)
class GatewayStateAdmin(admin.ModelAdmin):
    """One row: the kill switch. Pausing blocks every proposal and dispatch."""

    form = GatewayStateForm
    list_display = ("__str__", "paused", "reason", "changed_at", "changed_by")
    list_select_related = ("changed_by",)
    fields = ("paused", "why", "reason", "changed_at", "changed_by")
    readonly_fields = ("reason", "changed_at", "changed_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not GatewayState.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: GatewayState, form: forms.ModelForm, change: bool) -> None:
        obj.pk = 1  # the only id the singleton constraint allows
        if "paused" in form.changed_data:
            # The same switch as the gateway page's: audited, and a resume re-queues what the pause held.
            gateway.set_paused(obj.paused, user=request.user, reason=form.cleaned_data["why"])
            obj.refresh_from_db()
        else:
            super().save_model(request, obj, form, change)


# ------------------------------------------------------------------ notification preferences


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """How each lead is emailed about new items; leads without a row get immediate emails."""

    list_display = ("user", "mode", "last_digest_at", "updated_at")
    list_filter = ("mode",)
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    readonly_fields = ("updated_at",)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Alerts are raised by the detectors and acknowledged on /alerts/, where it is audited."""

    list_display = ("raised_at", "severity", "kind", "agent", "department", "repeats", "acknowledged_at")
    list_filter = ("severity", "kind", "department")
    list_select_related = ("agent", "department")
    search_fields = ("message", "agent__slug", "agent__name")


# ------------------------------------------------------------------ the login brake (django-axes)

# Access attempts (the failure counts and locks) stay, to lift a lock by
# deleting its row; the access and failure logs are off (docs/security.md),
# so their empty pages go.
admin.site.unregister(AccessLog)
admin.site.unregister(AccessFailureLog)


# ------------------------------------------------------------------ grant tiers


def _make_tier_moves(request: HttpRequest, grant_forms: Any) -> None:
    """The tier moves the grant forms left (agents.admin.GrantForm), through the one writer."""
    for form in grant_forms:
        move = getattr(form, "tier_move", None)
        if move is None:
            continue
        from_tier, to_tier = move
        if trust.set_tier_by_hand(form.instance, to_tier, by=request.user, from_tier=from_tier) is None:
            messages.warning(request, f"The tier of {form.instance} changed meanwhile; it was not set.")


admin.site.unregister(Grant)
admin.site.unregister(Agent)


@admin.register(Grant)
class GrantAdmin(agents_admin.GrantAdmin):
    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        _make_tier_moves(request, [form])


@admin.register(Agent)
class AgentAdmin(agents_admin.AgentAdmin):
    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is Grant:
            _make_tier_moves(request, formset.forms)


@admin.register(SlackIdentity)
class SlackIdentityAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Slack users linked to Countersign users (docs/slack.md). A click links
    its Slack user by the verified email Slack reports; an admin may link one
    by hand here, or delete a link to make the next click look it up again."""

    list_display = ("slack_user_id", "user", "email", "linked_at")
    search_fields = ("slack_user_id", "email", "user__username")
    autocomplete_fields = ("user",)
