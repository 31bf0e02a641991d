"""Helpers for the audit trail's tests: events, aged events, tampering as
someone with database access would, and verify_audit's verdict."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from audit import chain
from audit.log import Actor, record
from audit.models import AuditCheckpoint, AuditEvent


def sealed_events(n: int, obj: Any, **after: Any) -> list[AuditEvent]:
    events = [
        record("test.happened", obj, actor=Actor.system(), after={"n": i, "text": "naïve ü", **after}) for i in range(n)
    ]
    chain.seal_all()
    return [AuditEvent.objects.get(pk=event.pk) for event in events]


def aged_events(n: int, obj: Any, days: int) -> list[AuditEvent]:
    """Events written `days` ago (the database keeps their created_at forever)."""
    then = timezone.now() - timedelta(days=days)
    with mock.patch("django.utils.timezone.now", return_value=then):
        return [record("test.old", obj, actor=Actor.system(), after={"n": i}) for i in range(n)]


def tamper(sql: str, params: list | None = None) -> None:
    """As an attacker who can switch the triggers off (a superuser, the
    tables' owner) would: the row triggers and TRUNCATE's don't fire."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params or [])


def forge_checkpoint(seq: int, hash: str, purged_count: int, archive: str = "", archive_sha256: str = "") -> None:
    tamper(
        "INSERT INTO audit_auditcheckpoint (seq, hash, purged_count, archive, archive_sha256, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        [seq, hash, purged_count, archive, archive_sha256, timezone.now()],
    )


def relink(event: AuditEvent, **columns: Any) -> None:
    """Rewrite an event's columns with its hash recomputed, as a forger who
    knows the formula would, and re-link its successor to the new hash."""
    sets = ", ".join(f"{name} = %s" for name in columns)
    tamper(f"UPDATE audit_auditevent SET {sets} WHERE id = %s", [*columns.values(), event.pk])  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {chain.content_sql(connection.vendor)} FROM audit_auditevent WHERE id = %s",  # noqa: S608
            [event.pk],
        )
        content = cursor.fetchone()[0]
    forged = chain.link_hash(event.seq, event.prev_hash, content)
    tamper("UPDATE audit_auditevent SET hash = %s WHERE id = %s", [forged, event.pk])
    tamper("UPDATE audit_auditevent SET prev_hash = %s WHERE seq = %s", [forged, event.seq + 1])


def verify_audit(*args: str) -> str:
    """verify_audit's complaint (its error message); fails the test if it passes."""
    try:
        call_command("verify_audit", "--no-seal", *args)
    except CommandError as error:
        return str(error)
    raise AssertionError("verify_audit reported the trail OK")


def checkpoints() -> list[AuditCheckpoint]:
    return list(AuditCheckpoint.objects.order_by("seq"))
