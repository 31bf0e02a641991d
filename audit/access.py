"""Who reads the audit trail.

The audit app sits at the bottom of the imports (approvals → agents → audit)
and knows neither departments nor agents. What a person reads beyond the
audit permission is said by the app above that knows them: at start-up it
`provide`s a Directory (approvals.reach.AuditDirectory), and the viewer, its
exports and the reach rule all ask it through `readable_events`.

- An admin is an active user holding the audit permission,
  `audit.view_auditevent` (a superuser holds every permission). The staff
  flag alone only opens Django's admin site, where model permissions apply.
- An admin reads every event; anyone else the events of the departments they
  lead or back up and of the agents they own (docs/access.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q, QuerySet

from audit.models import AuditEvent
from audit.people import Person

ADMIN_PERMISSION = "audit.view_auditevent"


class Directory(Protocol):
    """What the audit trail asks of the app that knows departments and agents."""

    def member_department_ids(self, user: Person) -> Any:
        """The departments `user` leads or backs up: ids, or a subquery of them."""

    def owned_agent_ids(self, user: Person) -> Any:
        """The agents `user` owns: ids, or a subquery of them."""

    def agent_id(self, slug: str) -> int | None:
        """The agent with this slug, for the viewer's filter."""

    def departments(self, ids: Iterable[int] | None) -> list[tuple[int, str]]:
        """(id, name) of these departments, or of all when None, for the viewer's filter."""


_directory: Directory | None = None


def provide(directory: Directory) -> None:
    """Called once at start-up by the app above (approvals.apps)."""
    global _directory
    _directory = directory


def directory() -> Directory:
    if _directory is None:
        raise ImproperlyConfigured("No audit directory: the approvals app provides it when Django starts.")
    return _directory


def is_admin(user: Person | AnonymousUser) -> bool:
    # has_perm answers False for anonymous and inactive users, True for an active superuser.
    return bool(user.is_authenticated and user.has_perm(ADMIN_PERMISSION))


def readable_events(user: Person | AnonymousUser) -> QuerySet[AuditEvent]:
    """The events `user` may read in the viewer and its exports."""
    if is_admin(user):
        return AuditEvent.objects.all()
    if not user.is_authenticated:
        return AuditEvent.objects.none()
    found = directory()
    return AuditEvent.objects.filter(
        Q(department_id__in=found.member_department_ids(user)) | Q(agent_id__in=found.owned_agent_ids(user))
    )


def may_read_event(user: Person | AnonymousUser, event: AuditEvent) -> bool:
    return readable_events(user).filter(pk=event.pk).exists()
