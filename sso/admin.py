"""The claim-to-role mappings, edited here and audited like every other
admin edit; the identities are shown, and may only be deleted."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audit.admin import AuditedAdminMixin
from sso.models import OIDCIdentity, RoleMapping


@admin.register(RoleMapping)
class RoleMappingAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("claim", "value", "role", "department")
    list_filter = ("role", "department")
    search_fields = ("claim", "value")
    audit_name = "sso_role_mapping"

    def audit_scope(self, obj: RoleMapping) -> dict[str, int | None]:
        return {"department_id": obj.department_id}


@admin.register(OIDCIdentity)
class OIDCIdentityAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Written by the login; deleting one (or its user) unlinks the account,
    and the next login links or creates it again."""

    list_display = ("user", "subject", "issuer", "created_at")
    search_fields = ("user__username", "subject")
    audit_name = "sso_identity"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OIDCIdentity | None = None) -> bool:
        return False
