"""The global pause in the admin: the kill switch for every agent at once, with a reason."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from approvals.models import (
    GatewayState,
)
from approvals.services import gateway
from audit.people import person_of


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
        super().clean()
        # What ModelForm.clean returns, typed: the stubs allow None there, a form's data never is.
        cleaned = self.cleaned_data
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
            gateway.set_paused(obj.paused, user=person_of(request), reason=form.cleaned_data["why"])
            obj.refresh_from_db()
        else:
            super().save_model(request, obj, form, change)
