"""Retention: archive, checkpoint, then purge events past the retention period.

Only whole prefixes of the chain are purged, so what remains still verifies:
verification resumes from the checkpoint's seq and hash.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import chain, export
from audit.log import Actor, record
from audit.models import AuditCheckpoint, AuditEvent


@dataclass(frozen=True)
class Purge:
    purged: int
    up_to_seq: int
    archive: str


def _purgeable_up_to(cutoff: datetime, after_seq: int) -> int:
    """The highest seq such that it and every event before it are older than the cutoff."""
    first_kept = AuditEvent.objects.filter(seq__gt=after_seq, created_at__gte=cutoff).order_by("seq").first()
    if first_kept is not None:
        return first_kept.seq - 1
    last = AuditEvent.objects.filter(seq__gt=after_seq).order_by("-seq").first()
    return last.seq if last else after_seq


def _archive(events, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wt", encoding="utf-8") as archive:
        archive.writelines(export.as_jsonl(events))
    with open(partial, "rb") as written:
        os.fsync(written.fileno())
    partial.rename(path)


def purge_expired(now: datetime | None = None) -> Purge | None:
    """Archive then delete events older than AUDIT_RETENTION_DAYS (at least 90)."""
    days = max(90, settings.AUDIT_RETENTION_DAYS)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    chain.seal_all()
    last = AuditCheckpoint.objects.order_by("-seq").first()
    after_seq = last.seq if last else 0
    up_to = _purgeable_up_to(cutoff, after_seq)
    if up_to <= after_seq:
        return None
    doomed = AuditEvent.objects.filter(seq__gt=after_seq, seq__lte=up_to).order_by("seq")
    path = Path(settings.AUDIT_ARCHIVE_DIR) / f"audit-{after_seq + 1:012d}-{up_to:012d}.jsonl.gz"
    _archive(doomed, path)
    boundary = AuditEvent.objects.get(seq=up_to)
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # The one path the append-only trigger lets through.
                cursor.execute("SET LOCAL countersign.audit_purge = 'on'")
            cursor.execute("DELETE FROM audit_auditevent WHERE seq > %s AND seq <= %s", [after_seq, up_to])
            purged = cursor.rowcount
        checkpoint = AuditCheckpoint.objects.create(
            seq=up_to, hash=boundary.hash, purged_count=purged, archive=str(path)
        )
        record(
            "audit.purged",
            checkpoint,
            actor=Actor.system("retention"),
            after={"purged": purged, "up_to_seq": up_to, "archive": str(path), "retention_days": days},
        )
    return Purge(purged, up_to, str(path))
