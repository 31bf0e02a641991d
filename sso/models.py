"""Single sign-on's two tables: who each identity-provider account is here,
and which of the provider's claims make someone a lead, a backup or an admin
(docs/sso.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from approvals.models import Department


class OIDCIdentity(models.Model):
    """The provider's account (issuer and subject, the `sub` claim) a user
    signs in with. Found again by these two, never by a changed email."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identity")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_issuer_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class Role(models.TextChoices):
    LEAD = "lead", "Lead of the department"
    BACKUP = "backup", "Backup of the department"
    ADMIN = "admin", "Admin (may view the audit trail)"


class RoleMapping(models.Model):
    """A claim's value that gives a role. Every role named by some mapping is
    the provider's to give: at each login it is granted to whoever matches one
    of its mappings and taken from whoever matches none."""

    claim = models.CharField(
        max_length=100,
        help_text='The claim\'s name, e.g. "groups"; a dotted path reaches into an object ("realm_access.roles").',
    )
    value = models.CharField(
        max_length=255,
        help_text="Matches when the claim equals it, or, for a list, contains it (exact, case-sensitive).",
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    department = models.ForeignKey(
        Department,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="role_mappings",
        help_text="For a lead or backup role; empty for admin.",
    )

    class Meta:
        ordering = ["claim", "value", "role"]
        constraints = [
            models.CheckConstraint(
                condition=Q(role="admin", department__isnull=True)
                | Q(role__in=["lead", "backup"], department__isnull=False),
                name="sso_mapping_department_iff_lead_or_backup",
                violation_error_message="A lead or backup role needs its department; the admin role takes none.",
            ),
            models.UniqueConstraint(fields=["claim", "value", "role", "department"], name="sso_mapping_unique"),
        ]

    def __str__(self) -> str:
        where = f" of {self.department}" if self.department_id else ""
        return f"{self.claim} = {self.value} → {self.get_role_display().split(' ')[0].lower()}{where}"

    @property
    def target(self) -> tuple[str, int | None]:
        return (self.role, self.department_id)

    def matches(self, claims: dict[str, Any]) -> bool:
        value: Any = claims
        for part in self.claim.split("."):
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        values = value if isinstance(value, list) else [value]
        return any(_text(item) == self.value for item in values)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
