"""People's settings and links: notification preferences and Slack identities;
and django-axes' logs left out (docs/security.md)."""

from __future__ import annotations

from axes.models import AccessFailureLog, AccessLog
from django.contrib import admin

from approvals.models import (
    NotificationPreference,
    SlackIdentity,
)
from audit.admin import AuditedAdminMixin

# Access attempts (the failure counts and locks) stay, to lift a lock by
# deleting its row; the access and failure logs are off (docs/security.md),
# so their empty pages go.
admin.site.unregister(AccessLog)
admin.site.unregister(AccessFailureLog)


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """How each lead is emailed about new items; leads without a row get immediate emails."""

    list_display = ("user", "mode", "last_digest_at", "updated_at")
    list_filter = ("mode",)
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    readonly_fields = ("updated_at",)


@admin.register(SlackIdentity)
class SlackIdentityAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Slack users linked to Countersign users (docs/slack.md). A click links
    its Slack user by the verified email Slack reports; an admin may link one
    by hand here, or delete a link to make the next click look it up again."""

    list_display = ("slack_user_id", "user", "email", "linked_at")
    search_fields = ("slack_user_id", "email", "user__username")
    autocomplete_fields = ("user",)
