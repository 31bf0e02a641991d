"""The audit trail in the admin, and the admin's own audit: every edit an
admin makes to audited configuration goes through AuditedAdminMixin, which
writes its event in the transaction of the edit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, router, transaction
from django.forms import BaseModelFormSet, ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from audit.log import Actor, record
from audit.models import AuditCheckpoint, AuditEvent
from audit.people import person_of

HIDDEN = "(hidden)"
HIDDEN_CHANGED = "(hidden, changed)"
# Set on the instance between save_model and save_related: the admin saves
# many-to-many fields and inlines only after save_model has returned.
_BEFORE = "_audit_before"


def pretty_json(value: Any) -> str:
    return format_html('<pre class="json">{}</pre>', json.dumps(value, indent=2, sort_keys=True))


def audit_trail_link(**filters: Any) -> str:
    """A link to the audit events matching `filters`, e.g. agent_id=3."""
    url = reverse("admin:audit_auditevent_changelist") + "?" + urlencode(filters)
    return format_html('<a href="{}">Show its audit trail</a>', url)


def snapshot(obj: models.Model, secret_fields: Collection[str] = ()) -> dict[str, Any]:
    """The object's state as JSON-ready values: related rows by their name (what
    a reader of the trail recognises), secrets by a digest, so that a change
    of a secret is visible without its value."""
    state: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.is_relation:
            related = getattr(obj, field.name)
            value = None if related is None else str(related)
        else:
            value = field.value_from_object(obj)
        if field.name in secret_fields and value:
            value = hashlib.sha256(str(value).encode()).hexdigest()
        state[field.name] = value
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            state[field.name] = sorted(str(related) for related in getattr(obj, field.name).all())
    return json.loads(json.dumps(state, cls=DjangoJSONEncoder))


def _hide(state: dict[str, Any], secret_fields: Collection[str], mark: str) -> dict[str, Any]:
    return {name: (mark if name in secret_fields and value else value) for name, value in state.items()}


class AuditedAdminMixin:
    """Writes `<name>.created`, `<name>.changed` and `<name>.deleted` events, with
    the changed fields before and after, for edits made through this admin and
    through inlines of models whose own admin uses this mixin.

    The admin wraps add, change and delete views in a transaction, so each
    event commits or rolls back with its edit.
    """

    audit_name = ""  # verb prefix; empty: the model's verbose name, e.g. "action_type"
    audit_secret_fields: tuple[str, ...] = ()

    def audit_scope(self, obj: Any) -> dict[str, int | None]:
        """The event's department_id and agent_id, where the object has them."""
        return {}

    # ---- recording

    def audit_snapshot(self, obj: models.Model) -> dict[str, Any]:
        return snapshot(obj, self.audit_secret_fields)

    def audit_record(
        self, request: HttpRequest, obj: Any, what: str, before: dict | None, after: dict | None
    ) -> AuditEvent:
        name = self.audit_name or str(obj._meta.verbose_name).replace(" ", "_")
        return record(
            f"{name}.{what}",
            obj,
            actor=Actor.user(person_of(request)),
            before=before,
            after=after,
            **self.audit_scope(obj),
        )

    def audit_saved(self, request: HttpRequest, obj: models.Model, before: dict[str, Any] | None) -> None:
        """Record a save; `before` is the stored state, None for a new object."""
        after = self.audit_snapshot(obj)
        secrets = self.audit_secret_fields
        if before is None:
            self.audit_record(request, obj, "created", None, _hide(after, secrets, HIDDEN))
            return
        changed = [name for name in after if before.get(name) != after[name]]
        if not changed:  # "Save" without an edit changes nothing worth a record
            return
        self.audit_record(
            request,
            obj,
            "changed",
            _hide({name: before.get(name) for name in changed}, secrets, HIDDEN),
            _hide({name: after[name] for name in changed}, secrets, HIDDEN_CHANGED),
        )

    def audit_deleting(self, request: HttpRequest, obj: models.Model) -> None:
        """Record a deletion; call it before deleting, while the row has its pk."""
        self.audit_record(
            request, obj, "deleted", _hide(self.audit_snapshot(obj), self.audit_secret_fields, HIDDEN), None
        )

    def audit_stored(self, obj: models.Model) -> dict[str, Any]:
        # The form has already written its values onto `obj`: read the row.
        return self.audit_snapshot(type(obj)._default_manager.get(pk=obj.pk))

    # ---- ModelAdmin hooks

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        setattr(obj, _BEFORE, self.audit_stored(obj) if change else None)
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        obj = form.instance
        if hasattr(obj, _BEFORE):  # a subclass may save without our save_model (e.g. through a service)
            self.audit_saved(request, obj, obj.__dict__.pop(_BEFORE))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.audit_deleting(request, obj)
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        # The "delete selected" action runs outside the admin's view transaction.
        with transaction.atomic(using=router.db_for_write(queryset.model)):
            for obj in queryset:
                self.audit_deleting(request, obj)
            super().delete_queryset(request, queryset)  # type: ignore[misc]

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseModelFormSet, change: bool) -> None:
        inline_admin = self.admin_site._registry.get(formset.model)  # type: ignore[attr-defined]
        if not isinstance(inline_admin, AuditedAdminMixin):
            super().save_formset(request, form, formset, change)  # type: ignore[misc]
            return
        assert formset.model is not None  # an admin's inline formset is always of a model
        stored = formset.model._default_manager.in_bulk(
            [f.instance.pk for f in formset.initial_forms if f.instance.pk is not None]
        )
        for deleted in formset.deleted_forms:
            if deleted.instance.pk in stored:
                inline_admin.audit_deleting(request, stored[deleted.instance.pk])
        super().save_formset(request, form, formset, change)  # type: ignore[misc]
        for obj in formset.new_objects:
            inline_admin.audit_saved(request, obj, None)
        for obj, _fields in formset.changed_objects:
            inline_admin.audit_saved(request, obj, inline_admin.audit_snapshot(stored[obj.pk]))


class ReadOnlyAdminMixin:
    """View only: these rows are written by the service layer, never by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "seq", "actor_kind", "actor_label", "verb", "object_type", "object_label")
    list_filter = ("verb", "actor_kind", "created_at", "object_type")
    search_fields = ("actor_label", "object_label", "verb")
    ordering = ("-id",)
    # Counting a long trail on every page is slow and tells an admin nothing.
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("created_at", "verb", "actor_kind", "actor_label", "actor_id")}),
        ("Object", {"fields": ("object_type", "object_id", "object_label", "department_id", "agent_id")}),
        ("Change", {"fields": ("before_json", "after_json", "context_json")}),
        ("Chain", {"fields": ("seq", "prev_hash", "hash"), "classes": ("collapse",)}),
    )
    readonly_fields = ("before_json", "after_json", "context_json")

    @admin.display(description="before")
    def before_json(self, event: AuditEvent) -> str:
        return pretty_json(event.before)

    @admin.display(description="after")
    def after_json(self, event: AuditEvent) -> str:
        return pretty_json(event.after)

    @admin.display(description="context")
    def context_json(self, event: AuditEvent) -> str:
        return pretty_json(event.context)


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Where the chain resumes after a retention purge; written only by the purge."""

    list_display = ("seq", "created_at", "purged_count", "archive", "archive_sha256")
    ordering = ("-seq",)
