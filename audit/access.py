"""Who reads the audit trail, and the facts the reach rule is built on.

These live here, at the bottom of the imports (approvals → agents → audit),
so that the audit viewer and the reach rule above it (approvals.reach) read
the same definitions. The models above are named, not imported.

- An admin is an active user holding the audit permission,
  `audit.view_auditevent` (a superuser holds every permission). The staff
  flag alone only opens Django's admin site, where model permissions apply.
- A user is a member of the departments they lead or back up.
- An admin reads every event; anyone else the events of the departments they
  are a member of and of the agents they own.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet

from audit.models import AuditEvent
from audit.people import Person

ADMIN_PERMISSION = "audit.view_auditevent"


def is_admin(user: Person | AnonymousUser) -> bool:
    # has_perm answers False for anonymous and inactive users, True for an active superuser.
    return bool(user.is_authenticated and user.has_perm(ADMIN_PERMISSION))


def led_department_ids(user: Person) -> QuerySet[Any]:
    """The departments `user` leads, as a subquery of ids."""
    leads = apps.get_model("approvals", "Department").leads.through
    return leads.objects.filter(user_id=user.pk).values("department_id")


def backed_up_department_ids(user: Person) -> QuerySet[Any]:
    """The departments `user` backs up, as a subquery of ids."""
    backups = apps.get_model("approvals", "Department").backup_approvers.through
    return backups.objects.filter(user_id=user.pk).values("department_id")


def owned_agent_ids(user: Person) -> QuerySet[Any]:
    return apps.get_model("agents", "Agent").objects.filter(owner_id=user.pk).values("pk")


def member_department_ids(user: Person) -> list[int]:
    """The departments `user` leads or backs up, in one query."""
    department = apps.get_model("approvals", "Department")
    members = Q(pk__in=led_department_ids(user)) | Q(pk__in=backed_up_department_ids(user))
    return list(department.objects.filter(members).values_list("pk", flat=True).order_by("pk"))


def readable_events(user: Person | AnonymousUser) -> QuerySet[AuditEvent]:
    """The events `user` may read in the viewer and its exports."""
    if is_admin(user):
        return AuditEvent.objects.all()
    if not user.is_authenticated:
        return AuditEvent.objects.none()
    return AuditEvent.objects.filter(
        Q(department_id__in=led_department_ids(user))
        | Q(department_id__in=backed_up_department_ids(user))
        | Q(agent_id__in=owned_agent_ids(user))
    )


def may_read_event(user: Person | AnonymousUser, event: AuditEvent) -> bool:
    return readable_events(user).filter(pk=event.pk).exists()
