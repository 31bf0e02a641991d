"""Agents, their keys and grants in the admin.

Keys are issued and revoked only through agents.services; the raw key is
rendered once, in the response to the add form, and kept nowhere else.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from agents import services
from agents.models import Agent, AgentKey, AgentKeyQuerySet, AgentStatus, Grant
from audit.admin import AuditedAdminMixin, audit_trail_link
from audit.log import Actor
from audit.people import person_of

# The raw key travels from save_model to response_add on the request object:
# in memory for one response, never in the session or the messages.
_ISSUED_RAW_KEY = "_countersign_issued_raw_key"


# ------------------------------------------------------------------ grants


GRANT_LIMITS = (
    "max_amount_per_action",
    "max_actions_per_day",
    "max_amount_per_day",
    "auto_approve_max_amount",
    "min_confidence",
)


class GrantForm(forms.ModelForm):
    """Grant.clean() refuses executor tier on high and critical action types;
    the admin shows that as an error on the tier field.

    The form never writes the tier of an existing grant: it saves the other
    fields under the stored tier and leaves the move in `tier_move` (from,
    to). approvals.admin, which re-registers these admins, makes it through
    approvals.autonomy.trust.set_tier, the one writer of a grant's tier, so it has its
    TierChange (the agent's tier history) and its audit event."""

    tier_move: tuple[str, str] | None = None

    class Meta:
        model = Grant
        fields = ("agent", "action_type", "tier", *GRANT_LIMITS)

    def save(self, commit: bool = True) -> Grant:
        if self.instance.pk is not None and "tier" in self.changed_data:
            self.tier_move = (self.initial["tier"], self.instance.tier)
            self.instance.tier = self.initial["tier"]
        return super().save(commit)


class GrantInline(admin.TabularInline):
    model = Grant
    form = GrantForm
    fields = ("action_type", "tier", *GRANT_LIMITS, "tier_changed_at")
    readonly_fields = ("tier_changed_at",)
    autocomplete_fields = ("action_type",)
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Grant]:
        return super().get_queryset(request).select_related("agent", "action_type")


@admin.register(Grant)
class GrantAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = GrantForm
    list_display = ("agent", "action_type", "risk", "tier", "max_amount_per_action", "max_actions_per_day")
    list_filter = ("tier", "action_type__risk", "agent__department")
    search_fields = ("agent__slug", "agent__name", "action_type__slug", "action_type__name")
    list_select_related = ("agent", "action_type")
    autocomplete_fields = ("agent", "action_type")
    ordering = ("agent__name", "action_type__slug")
    fields = ("agent", "action_type", "tier", *GRANT_LIMITS, "tier_changed_at", "created_at")
    readonly_fields = ("tier_changed_at", "created_at")

    def audit_scope(self, obj: Grant) -> dict[str, int | None]:
        return {"department_id": obj.agent.department_id, "agent_id": obj.agent_id}

    @admin.display(description="risk", ordering="action_type__risk")
    def risk(self, grant: Grant) -> str:
        return grant.action_type.get_risk_display()


# ------------------------------------------------------------------ keys


class AgentKeyInline(admin.TabularInline):
    """The agent's live keys on its page, read-only, with their last use, so a
    stray one stands out: they are issued and revoked on the key pages."""

    model = AgentKey
    fields = ("prefix", "label", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    verbose_name_plural = "live keys"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentKey]:
        # The model's default queryset, so AgentKey.objects' own: the admin's stubs only know a QuerySet.
        return cast(AgentKeyQuerySet, super().get_queryset(request)).usable()

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class KeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("usable", "Usable"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AgentKey]) -> QuerySet[AgentKey]:
        if self.value() == "usable":
            # The changelist's queryset comes from AgentKey.objects: an AgentKeyQuerySet.
            return cast(AgentKeyQuerySet, queryset).usable()
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=timezone.now())
        return queryset


class AgentKeyForm(forms.ModelForm):
    # One use each (see AgentKeyAdmin.add_view): a reloaded or repeated submit
    # of the same add form must not silently issue a second key.
    issue_token = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = AgentKey
        fields = ("agent", "label", "expires_at")

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        changed = "expires_at" in self.changed_data
        if expires_at is not None and changed and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future. To stop a key now, revoke it.")
        return expires_at


@admin.register(AgentKey)
class AgentKeyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = AgentKeyForm
    list_display = ("prefix", "agent", "label", "created_at", "expires_at", "revoked_at", "last_used_at", "usable")
    list_filter = (KeyStateFilter, "agent__department", "agent")
    search_fields = ("prefix", "label", "agent__slug", "agent__name")
    list_select_related = ("agent",)
    autocomplete_fields = ("agent",)
    ordering = ("-created_at",)
    actions = ("revoke_selected_keys",)
    audit_secret_fields = ("key_hash",)  # nothing to learn from it in the trail

    def get_fields(self, request: HttpRequest, obj: AgentKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("agent", "label", "expires_at", "issue_token")
        return ("agent", "prefix", "label", "expires_at", "created_at", "revoked_at", "last_used_at")

    def get_readonly_fields(self, request: HttpRequest, obj: AgentKey | None = None) -> tuple[str, ...]:
        # After issue only the label and the expiry may change.
        if obj is None:
            return ()
        return ("agent", "prefix", "created_at", "revoked_at", "last_used_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: a revoked key still explains old audit events

    @admin.display(boolean=True, description="usable")
    def usable(self, key: AgentKey) -> bool:
        return key.is_usable

    def audit_scope(self, obj: AgentKey) -> dict[str, int | None]:
        return {"department_id": obj.agent.department_id, "agent_id": obj.agent_id}

    def save_model(self, request: HttpRequest, obj: AgentKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)  # label or expiry: audited as agent_key.changed
            return
        _spend_issue_token(request, form.cleaned_data["issue_token"])
        key, raw = services.issue_key(
            form.cleaned_data["agent"],
            actor=Actor.user(person_of(request)),
            label=form.cleaned_data["label"],
            expires_at=form.cleaned_data["expires_at"],
        )
        # The admin goes on with the form's instance (history, redirects): make it the issued key.
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = key.pk, key.prefix, key.key_hash, key.created_at
        obj._state.adding = False
        setattr(request, _ISSUED_RAW_KEY, raw)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_changeform_initial_data(request)
        initial["issue_token"] = _new_issue_token(request)
        days = settings.AGENT_KEY_EXPIRY_DAYS
        if days:
            initial.setdefault("expires_at", timezone.now() + timedelta(days=days))
        return initial

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if request.method == "POST" and not _issue_token_unspent(request, request.POST.get("issue_token", "")):
            # The add form was submitted already (a reload re-posts it): the
            # key it issued was shown then and cannot be shown again.
            self.message_user(
                request,
                "That form already issued its key, which was shown once and cannot be shown again. "
                "Nothing new was issued. Revoke the key if it was not copied, and issue another from a fresh form.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:agents_agentkey_changelist") + "?state=usable")
        # Every add ends on the page that shows the key; the other save buttons would only mislead.
        extra_context = {**(extra_context or {}), "show_save_and_add_another": False, "show_save_and_continue": False}
        return super().add_view(request, form_url, extra_context)

    def response_add(self, request: HttpRequest, obj: AgentKey, post_url_continue: str | None = None) -> HttpResponse:
        raw = getattr(request, _ISSUED_RAW_KEY, None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "Agent key issued",
            "opts": self.opts,
            "key": obj,
            "raw_key": raw,
            "agent_url": reverse("admin:agents_agent_change", args=[obj.agent_id]),
            "key_url": reverse("admin:agents_agentkey_change", args=[obj.pk]),
        }
        return TemplateResponse(request, "admin/agents/agentkey/key_issued.html", context)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected_keys(self, request: HttpRequest, queryset: QuerySet[AgentKey]) -> None:
        actor = Actor.user(person_of(request))
        to_revoke = list(queryset.filter(revoked_at__isnull=True).select_related("agent"))
        with transaction.atomic():
            for key in to_revoke:
                services.revoke_key(key, actor=actor)
        self.message_user(request, f"Revoked {len(to_revoke)} key(s).", messages.SUCCESS)


_ISSUE_TOKENS = "agent_key_issue_tokens"  # session: the add forms not yet submitted
_MAX_OPEN_FORMS = 20


def _new_issue_token(request: HttpRequest) -> str:
    token = secrets.token_urlsafe(16)
    open_forms = request.session.get(_ISSUE_TOKENS, [])[-(_MAX_OPEN_FORMS - 1) :]
    request.session[_ISSUE_TOKENS] = [*open_forms, token]
    return token


def _issue_token_unspent(request: HttpRequest, token: str) -> bool:
    return bool(token) and token in request.session.get(_ISSUE_TOKENS, [])


def _spend_issue_token(request: HttpRequest, token: str) -> None:
    request.session[_ISSUE_TOKENS] = [t for t in request.session.get(_ISSUE_TOKENS, []) if t != token]


# ------------------------------------------------------------------ agents


AGENT_FIELDS = (
    "name",
    "slug",
    "department",
    "owner",
    "purpose",
    "version",
    "status",
    "next_review_on",
    "suspend_on_anomaly",
    "daily_token_budget",
    "daily_cost_budget",
)


class AgentForm(forms.ModelForm):
    status_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Reason for the status change",
        help_text="Required when you change the status. It goes into the audit trail.",
    )

    class Meta:
        model = Agent
        fields = AGENT_FIELDS

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data  # what ModelForm.clean returns; its stub allows None
        if self.instance.pk is None or "status" not in self.changed_data:
            return cleaned
        if not cleaned.get("status_reason", "").strip():
            self.add_error("status_reason", "Say why the status changes; the reason is kept in the audit trail.")
        if self.initial.get("status") == AgentStatus.RETIRED and cleaned.get("status") == AgentStatus.ACTIVE:
            self.add_error("status", "A retired agent cannot be resumed.")
        return cleaned


@admin.register(Agent)
class AgentAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Status changes go through agents.services (suspend, resume) with the
    admin's reason, so they read in the trail as they do from the lead UI."""

    form = AgentForm
    inlines = (GrantInline, AgentKeyInline)
    list_display = ("name", "slug", "department", "owner", "status", "version", "created_at")
    list_filter = ("status", "department")
    search_fields = ("name", "slug", "purpose", "owner__username", "owner__email")
    list_select_related = ("department", "owner")
    autocomplete_fields = ("owner",)
    prepopulated_fields = {"slug": ("name",)}
    ordering = ("name",)
    readonly_fields = ("created_at", "keys_help", "trail")

    def get_fields(self, request: HttpRequest, obj: Agent | None = None) -> tuple[str, ...]:
        if obj is None:
            return AGENT_FIELDS
        return (*AGENT_FIELDS, "status_reason", "created_at", "keys_help", "trail")

    @admin.display(description="keys")
    def keys_help(self, agent: Agent) -> str:
        add = reverse("admin:agents_agentkey_add") + f"?agent={agent.pk}"
        live = reverse("admin:agents_agentkey_changelist") + f"?agent__id__exact={agent.pk}&state=usable"
        return format_html(
            '<a href="{}">Issue a new key for this agent</a> (the key is shown once) · '
            '<a href="{}">Revoke live keys</a>',
            add,
            live,
        )

    @admin.display(description="audit trail")
    def trail(self, agent: Agent) -> str:
        return audit_trail_link(agent_id=agent.pk)

    def audit_scope(self, obj: Agent) -> dict[str, int | None]:
        return {"department_id": obj.department_id, "agent_id": obj.pk}

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        target = obj.status
        if change and "status" in form.changed_data:
            # Save the other fields under the old status; save_related moves it through the service.
            obj.status = form.initial["status"]
            obj._status_move = (target, form.cleaned_data["status_reason"].strip())  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        move = form.instance.__dict__.pop("_status_move", None)
        if move is not None:
            target, reason = move
            services.set_status(form.instance, target, actor=Actor.user(person_of(request)), reason=reason)
