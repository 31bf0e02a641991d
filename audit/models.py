from __future__ import annotations

from typing import Any, NoReturn

from django.db import models


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit events are append-only: they cannot be updated.")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("Audit events are append-only: they cannot be deleted.")

    def for_object(self, obj: models.Model) -> AuditEventQuerySet:
        return self.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))


class ActorKind(models.TextChoices):
    USER = "user", "User"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    """One thing that happened: who did what to which object, before and after.

    `seq`, `prev_hash` and `hash` form the tamper-evident chain; `department_id`
    and `agent_id` are plain numbers (not foreign keys) so the audit trail keeps
    every event even after the rows it speaks of are gone.
    """

    seq = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    # Deliberately few indexes: each one is paid again when the sequencer seals
    # the row. Time and verb filters walk the primary key from the newest event.
    created_at = models.DateTimeField(auto_now_add=True)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    verb = models.CharField(max_length=64)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    object_label = models.CharField(max_length=200, blank=True)
    department_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    agent_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    hash = models.CharField(max_length=64, blank=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # Related lookups and deletion collectors use the base manager: make it
        # the refusing one too.
        base_manager_name = "objects"
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            # The sequencer's work list: small, since events are sealed just after commit.
            models.Index(fields=["id"], condition=models.Q(seq__isnull=True), name="audit_unsealed_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(actor_kind__in=ActorKind.values), name="audit_actor_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label or self.actor_kind} {self.verb} {self.object_label or self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit events are append-only: they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit events are append-only: they cannot be deleted.")


class AuditCheckpoint(models.Model):
    """Where the chain resumes after a retention purge: the last purged
    event's seq and hash, and the archive that holds the purged events with
    its sha256. On PostgreSQL only the retention function `audit_purge()`
    may write one (audit/migrations/0003)."""

    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    purged_count = models.PositiveIntegerField()
    archive = models.CharField(max_length=500, help_text="File holding the purged events (JSON Lines, gzip).")
    archive_sha256 = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the archive file, as written by the retention job."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"Checkpoint at seq {self.seq}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit checkpoints cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit checkpoints cannot be deleted.")
