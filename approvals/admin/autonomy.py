"""Earned autonomy in the admin: promotion thresholds, the tier history, and the
agents' and grants' admins of agents.admin re-registered so that a tier changed
there goes through approvals.autonomy.trust.set_tier (imports flow approvals → agents)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import F
from django.http import HttpRequest

from agents import admin as agents_admin
from agents.models import Agent, Grant
from approvals.admin.preview import PreviewTheEffectMixin
from approvals.autonomy import trust
from approvals.models import (
    PromotionPolicy,
    TierChange,
)
from approvals.replay import changes
from audit.admin import AuditedAdminMixin, ReadOnlyAdminMixin
from audit.people import person_of


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
        super().clean()
        # What ModelForm.clean returns, typed: the stubs allow None there, a form's data never is.
        cleaned = self.cleaned_data
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
class PromotionPolicyAdmin(PreviewTheEffectMixin, AuditedAdminMixin, admin.ModelAdmin):
    form = PromotionPolicyForm
    replay_change = staticmethod(changes.of_policy)
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


def _make_tier_moves(request: HttpRequest, grant_forms: Any) -> None:
    """The tier moves the grant forms left (agents.admin.GrantForm), through the one writer."""
    for form in grant_forms:
        move = getattr(form, "tier_move", None)
        if move is None:
            continue
        from_tier, to_tier = move
        if trust.set_tier_by_hand(form.instance, to_tier, by=person_of(request), from_tier=from_tier) is None:
            messages.warning(request, f"The tier of {form.instance} changed meanwhile; it was not set.")


# agents.admin's own registrations give way to these subclasses.
admin.site.unregister(Grant)
admin.site.unregister(Agent)


@admin.register(Grant)
class GrantAdmin(PreviewTheEffectMixin, agents_admin.GrantAdmin):
    replay_change = staticmethod(changes.of_grant)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        _make_tier_moves(request, [form])


@admin.register(Agent)
class AgentAdmin(agents_admin.AgentAdmin):
    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is Grant:
            _make_tier_moves(request, formset.forms)
