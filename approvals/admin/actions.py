"""Actions, decisions and executions, read-only: only approvals.services writes them."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from approvals.models import (
    Action,
    Decision,
    Execution,
)
from audit.admin import ReadOnlyAdminMixin, audit_trail_link, pretty_json


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
