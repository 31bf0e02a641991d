"""Retention: archive, then purge events past the retention period.

Steps (purge_expired):

1. seal what is pending, and verify the chain: a broken chain is never
   purged, so that no evidence of tampering leaves with the old events;
2. find the longest prefix after the last checkpoint whose events are all
   older than the retention (only whole prefixes go, so what remains still
   verifies from the checkpoint's seq and hash);
3. write those events to a gzip JSON Lines archive and take its sha256;
4. in one transaction: on PostgreSQL, the database function `audit_purge()`
   checks the request again (at least 90 days old, exactly that prefix),
   deletes the events and writes the checkpoint with the archive's digest;
   nothing else may delete an event or write a checkpoint there
   (audit/migrations/0003). Elsewhere the same is done here. Then the
   `audit.purged` event, which vouches for the checkpoint.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import chain, export
from audit.checkpoints import PURGED_VERB, file_sha256
from audit.log import Actor, record
from audit.models import AuditCheckpoint, AuditEvent
from audit.verification import verify

log = logging.getLogger(__name__)

FLOOR_DAYS = 90  # the database function refuses anything younger, whatever the settings say


class RetentionRefused(Exception):
    """The chain does not verify: purging now would archive the evidence away."""


@dataclass(frozen=True)
class Purge:
    purged: int
    up_to_seq: int
    archive: str
    archive_sha256: str


def _purgeable_up_to(cutoff: datetime, after_seq: int) -> int:
    """The highest seq such that it and every event before it are older than the cutoff."""
    first_kept = AuditEvent.objects.filter(seq__gt=after_seq, created_at__gte=cutoff).order_by("seq").first()
    if first_kept is not None:
        assert first_kept.seq is not None  # seq__gt matched it: a sealed event
        return first_kept.seq - 1
    last = AuditEvent.objects.filter(seq__gt=after_seq).order_by("-seq").first()
    if last is None:
        return after_seq
    assert last.seq is not None  # seq__gt matched it: a sealed event
    return last.seq


def _archive(events, path: Path) -> str:
    """Write the events to `path`; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wt", encoding="utf-8") as archive:
        archive.writelines(export.as_jsonl(events))
    with open(partial, "rb") as written:
        os.fsync(written.fileno())
    partial.rename(path)
    return file_sha256(path)


def purge_expired() -> Purge | None:
    """Archive then delete events older than AUDIT_RETENTION_DAYS (at least 90)."""
    days = max(FLOOR_DAYS, settings.AUDIT_RETENTION_DAYS)
    cutoff = timezone.now() - timedelta(days=days)
    chain.seal_all()
    last = AuditCheckpoint.objects.order_by("-seq").first()
    after_seq = last.seq if last else 0
    up_to = _purgeable_up_to(cutoff, after_seq)
    if up_to <= after_seq:
        return None
    verification = verify()
    if not verification.ok:
        log.error("Audit retention refused: %s", verification.problem)
        raise RetentionRefused(f"The audit trail does not verify, so nothing is purged: {verification.problem}")
    doomed = AuditEvent.objects.filter(seq__gt=after_seq, seq__lte=up_to).order_by("seq")
    path = Path(settings.AUDIT_ARCHIVE_DIR) / f"audit-{after_seq + 1:012d}-{up_to:012d}.jsonl.gz"
    digest = _archive(doomed, path)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT audit_purge(%s, %s, %s, %s, %s)", [cutoff, after_seq + 1, up_to, str(path), digest]
                )
                checkpoint = AuditCheckpoint.objects.get(pk=cursor.fetchone()[0])
        else:
            checkpoint = _purge_here(after_seq, up_to, str(path), digest)
        record(
            PURGED_VERB,
            checkpoint,
            actor=Actor.system("retention"),
            after={
                "purged": checkpoint.purged_count,
                "up_to_seq": checkpoint.seq,
                "hash": checkpoint.hash,
                "archive": checkpoint.archive,
                "archive_sha256": checkpoint.archive_sha256,
                "retention_days": days,
            },
        )
    return Purge(checkpoint.purged_count, up_to, str(path), digest)


def _purge_here(after_seq: int, up_to: int, archive: str, digest: str) -> AuditCheckpoint:
    """What audit_purge() does on PostgreSQL, for the other backends (which
    have no triggers: the model layer's refusal is all they get)."""
    boundary = AuditEvent.objects.get(seq=up_to)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE seq > %s AND seq <= %s", [after_seq, up_to])
        purged = cursor.rowcount
    return AuditCheckpoint.objects.create(
        seq=up_to, hash=boundary.hash, purged_count=purged, archive=archive, archive_sha256=digest
    )
