""" "Preview the effect" on the change forms of a grant, an action type and a
promotion policy: before saving, the edit as typed is replayed over the
recorded proposals (approvals.replay) and its comparison shown under the
form. Nothing is saved; the preview is recorded in the audit trail.

The button posts the whole form to <id>/change/preview/: with htmx the
comparison is swapped in under the form, which keeps what was typed;
without it, the preview comes back as a page of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path

from approvals.replay import changes, report
from audit.log import Actor
from audit.people import person_of

if TYPE_CHECKING:
    from django.template.response import _TemplateForResponseT  # ModelAdmin's own type for it

Of = Callable[[Any, Any], changes.Change]


class PreviewTheEffectMixin:
    """For a ModelAdmin: `replay_change` makes the Change from (edited, saved)."""

    change_form_template: ClassVar[_TemplateForResponseT | None] = "admin/replay/change_form.html"
    replay_change: Of

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta  # type: ignore[attr-defined]
        preview = path(
            "<path:object_id>/change/preview/",
            self.admin_site.admin_view(self.preview_the_effect),  # type: ignore[attr-defined]
            name=f"{opts.app_label}_{opts.model_name}_preview",
        )
        return [preview, *super().get_urls()]  # type: ignore[misc]

    def preview_the_effect(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            raise Http404("Preview the effect from the change form.")
        saved = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if saved is None:
            raise Http404("No such object.")
        if not self.has_change_permission(request, saved):  # type: ignore[attr-defined]
            raise PermissionDenied
        # The form cleans into its instance: a second copy, so `saved` stays as stored.
        form = self.get_form(request, saved, change=True)(  # type: ignore[attr-defined]
            request.POST,
            request.FILES,
            instance=self.get_object(request, object_id),  # type: ignore[attr-defined]
        )
        context: dict[str, Any] = {"no_charts": True, "opts": self.model._meta}  # type: ignore[attr-defined]
        context.update(self._preview(request, form, saved))
        # HtmxMiddleware sets `htmx` on every request; the admin's hooks are typed with a plain HttpRequest.
        template = "approvals/simulation_result.html" if request.htmx else "admin/replay/preview.html"  # type: ignore[attr-defined]
        return render(request, template, {**self.admin_site.each_context(request), **context, "original": saved})  # type: ignore[attr-defined]

    def _preview(self, request: HttpRequest, form: Any, saved: models.Model) -> dict[str, Any]:
        try:
            days = int(request.POST.get("_preview_days") or report.DEFAULT_DAYS)
            if not 1 <= days <= report.MAX_DAYS:
                raise ValueError
        except ValueError:
            return {"error": f"Days replayed: a whole number from 1 to {report.MAX_DAYS}."}
        if not form.is_valid():
            problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
            return {"error": f"Correct the form first ({problems})."}
        change = type(self).replay_change(form.instance, saved)
        if not change.edits:
            return {"error": "This edit changes nothing the simulator replays: " + ", ".join(self._replayed()) + "."}
        result = report.simulate(change, actor=Actor.user(person_of(request)), days=days)
        return {"result": result, "data": result.as_dict()}

    def _replayed(self) -> tuple[str, ...]:
        return {
            "grant": changes.GRANT_FIELDS,
            "actiontype": changes.ACTION_TYPE_FIELDS,
            "promotionpolicy": changes.POLICY_FIELDS,
        }[self.model._meta.model_name]  # type: ignore[attr-defined]
