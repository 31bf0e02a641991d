"""From the provider's claims to a Countersign user and their roles.

A user is found by the provider's account (issuer and `sub`), else by an
email the provider says is verified, else created. An unverified email never
links to an existing account. Roles then follow the mappings (RoleMapping),
each grant and revocation in the audit trail."""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import SuspiciousOperation
from django.db import transaction

from approvals.models import Department
from audit.log import Actor, record
from audit.people import Person
from sso.models import OIDCIdentity, Role, RoleMapping

ADMIN_PERMISSION = ("audit", "view_auditevent")  # docs/access.md: an admin holds it
ACTOR = Actor.system("single sign-on")


def verified_email(claims: dict[str, Any]) -> str:
    email = claims.get("email")
    verified = claims.get("email_verified")
    if isinstance(email, str) and email and (verified is True or str(verified).lower() == "true"):
        return email.strip()
    return ""


@transaction.atomic
def sign_in(claims: dict[str, Any]) -> Person:
    """The user these claims belong to, their roles brought in line with the mappings."""
    user = user_for(claims)
    if user.is_active:
        apply_roles(user, claims)
    return user


def user_for(claims: dict[str, Any]) -> Person:
    issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
    if not subject:
        raise SuspiciousOperation("The provider's claims carry no sub.")
    identity = OIDCIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is not None:
        return identity.user
    email = verified_email(claims)
    User = get_user_model()
    if email:
        matches = list(User.objects.filter(email__iexact=email)[:2])
        if len(matches) > 1:
            raise SuspiciousOperation(f"Two accounts have the email {email}; an admin must tell them apart.")
        if matches:
            user = matches[0]
            if OIDCIdentity.objects.filter(user=user).exists():
                raise SuspiciousOperation(f"The account with {email} is linked to another provider account.")
            OIDCIdentity.objects.create(user=user, issuer=issuer, subject=subject)
            record("sso.account_linked", user, actor=ACTOR, after={"issuer": issuer, "sub": subject, "email": email})
            return user
    user = User(username=_free_username(claims, email), email=email)
    for field in ("given_name", "family_name"):
        value = claims.get(field)
        if isinstance(value, str):
            setattr(user, {"given_name": "first_name", "family_name": "last_name"}[field], value[:150])
    user.set_unusable_password()
    user.save()
    OIDCIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    record("sso.account_created", user, actor=ACTOR, after={"issuer": issuer, "sub": subject, "email": email})
    return user


def _free_username(claims: dict[str, Any], email: str) -> str:
    """The verified email, else the preferred name, else one made from the
    subject; with a suffix when taken. Only a name: nothing is linked by it."""
    User = get_user_model()
    digest = hashlib.sha256(f"{claims.get('iss', '')} {claims['sub']}".encode()).hexdigest()[:10]
    preferred = claims.get("preferred_username")
    for candidate in (email, preferred if isinstance(preferred, str) else "", f"sso-{digest}"):
        candidate = candidate[:150]
        if candidate and not User.objects.filter(username__iexact=candidate).exists():
            return candidate
    return f"sso-{digest}-{User.objects.count()}"


def apply_roles(user: Person, claims: dict[str, Any]) -> None:
    """Grant every mapped role the claims match, revoke every mapped role they
    don't. Roles no mapping names are left as the admin set them."""
    mappings = list(RoleMapping.objects.all())
    wanted = {mapping.target for mapping in mappings if mapping.matches(claims)}
    for role, department_id in sorted({mapping.target for mapping in mappings}, key=str):
        if role == Role.ADMIN:
            _set_admin(user, (role, department_id) in wanted)
        else:
            assert department_id is not None  # a lead or backup mapping names its department (a check constraint)
            _set_member(user, role, Department.objects.get(pk=department_id), (role, department_id) in wanted)


def _set_member(user: Person, role: str, department: Department, wanted: bool) -> None:
    members = department.leads if role == Role.LEAD else department.backup_approvers
    has = members.filter(pk=user.pk).exists()
    if wanted == has:
        return
    (members.add if wanted else members.remove)(user)
    record(
        "sso.role_granted" if wanted else "sso.role_revoked",
        department,
        actor=ACTOR,
        after={"user": user.get_username(), "user_id": user.pk, "role": role, "department": department.slug},
        department_id=department.pk,
    )


def _set_admin(user: Person, wanted: bool) -> None:
    permission = Permission.objects.get(content_type__app_label=ADMIN_PERMISSION[0], codename=ADMIN_PERMISSION[1])
    has = user.user_permissions.filter(pk=permission.pk).exists()
    if wanted == has:
        return
    (user.user_permissions.add if wanted else user.user_permissions.remove)(permission)
    record(
        "sso.role_granted" if wanted else "sso.role_revoked",
        user,
        actor=ACTOR,
        after={"user": user.get_username(), "user_id": user.pk, "role": Role.ADMIN},
    )
