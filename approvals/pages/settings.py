"""/settings/: a lead's own notification settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render

from approvals import services
from approvals.models import (
    NotificationMode,
    NotificationPreference,
)
from approvals.pages.requests import PageRequest
from approvals.reach import reach_of


@login_required
def lead_settings(request: PageRequest) -> HttpResponse:
    """How the lead hears of new items: immediately, an hourly digest, or not at all."""
    if request.method == "POST":
        try:
            services.set_notification_mode(request.user, request.POST.get("mode", ""))
        except ValueError:
            messages.error(request, "Choose one of the notification options.")
        else:
            messages.success(request, "Notification preference saved.")
        return redirect("lead-settings")
    preference = NotificationPreference.for_user(request.user)
    return render(
        request,
        "approvals/settings.html",
        {"preference": preference, "modes": NotificationMode.choices, "led": list(reach_of(request.user).led)},
    )
