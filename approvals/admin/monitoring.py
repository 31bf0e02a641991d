"""Alerts, read-only: the detectors raise them and people acknowledge them on /alerts/."""

from __future__ import annotations

from django.contrib import admin

from approvals.models import (
    Alert,
)
from audit.admin import ReadOnlyAdminMixin


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Alerts are raised by the detectors and acknowledged on /alerts/, where it is audited."""

    list_display = ("raised_at", "severity", "kind", "agent", "department", "repeats", "acknowledged_at")
    list_filter = ("severity", "kind", "department")
    list_select_related = ("agent", "department")
    search_fields = ("message", "agent__slug", "agent__name")
