"""A lead's own settings: how they are told of new actions."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from approvals.models import (
    NotificationMode,
    NotificationPreference,
)
from audit.log import Actor, record
from audit.people import Person


@transaction.atomic
def set_notification_mode(user: Person, mode: str, *, by: Person | None = None) -> NotificationPreference:
    """Choose how `user` hears of new items in the queues they lead
    (NotificationMode: immediate, hourly, off). `by` is who made the change,
    when not the user themselves. Raises ValueError for an unknown mode.

    Switching to the hourly digest starts its window now, so the first digest
    does not repeat items already emailed one by one.
    """
    chosen = NotificationMode(mode)
    preference, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
    before = preference.mode
    if before == chosen:
        return preference
    preference.mode = chosen
    if chosen == NotificationMode.HOURLY:
        preference.last_digest_at = timezone.now()
    preference.save(update_fields=["mode", "last_digest_at", "updated_at"])
    record(
        "notification_preference.changed",
        preference,
        actor=Actor.user(by or user),
        before={"mode": before},
        after={"mode": chosen.value},
    )
    return preference
