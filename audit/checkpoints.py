"""Checks of the retention checkpoints against the chain and the archives.

A checkpoint says: events up to `seq` were purged, the last of them had
`hash`, and they are in `archive`, a file whose sha256 is `archive_sha256`.
Only the retention function writes one on PostgreSQL; these checks catch
one that was forged anyway (another backend, triggers switched off).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.db.models import Q

from audit.chain import GENESIS, Problem
from audit.export import parse_jsonl
from audit.models import AuditCheckpoint, AuditEvent

PURGED_VERB = "audit.purged"


def check(trail: Sequence[AuditCheckpoint]) -> tuple[list[Problem], list[str]]:
    """Problems with the checkpoints (oldest first in `trail`), and notes on
    what could not be checked here."""
    if not trail:
        return [], []
    problems: list[Problem] = []
    notes: list[str] = []
    last = trail[-1]
    leftover = AuditEvent.objects.filter(seq__lte=last.seq).order_by("seq").values_list("seq", "id").first()
    if leftover:
        problems.append(
            Problem(
                leftover[0],
                leftover[1],
                f"event seq {leftover[0]} (id {leftover[1]}) is still here, though the checkpoint at seq {last.seq} "
                f"(checkpoint id {last.pk}) says it was purged: a checkpoint forged over live events?",
            )
        )
    if not _vouched_for(last):
        problems.append(
            Problem(
                last.seq,
                None,
                f"the checkpoint at seq {last.seq} (checkpoint id {last.pk}) has no {PURGED_VERB} event after it "
                "with its seq, hash and archive digest: the retention job did not write it (forged?)",
            )
        )
    previous_seq, previous_hash = 0, GENESIS
    for checkpoint in trail:
        if checkpoint.purged_count != checkpoint.seq - previous_seq:
            problems.append(
                Problem(
                    checkpoint.seq,
                    None,
                    f"the checkpoint at seq {checkpoint.seq} (checkpoint id {checkpoint.pk}) says it purged "
                    f"{checkpoint.purged_count} events, but the one before it ends at seq {previous_seq}",
                )
            )
        problem, note = _check_archive(checkpoint, previous_seq, previous_hash)
        if problem:
            problems.append(problem)
        if note:
            notes.append(note)
        previous_seq, previous_hash = checkpoint.seq, checkpoint.hash
    return problems, notes


def _vouched_for(checkpoint: AuditCheckpoint) -> bool:
    """Every purge records, after its checkpoint, an audit.purged event with
    the checkpoint's seq, hash and archive digest."""
    events = AuditEvent.objects.filter(
        Q(seq__isnull=True) | Q(seq__gt=checkpoint.seq),
        verb=PURGED_VERB,
        object_type=AuditCheckpoint._meta.label_lower,
        object_id=str(checkpoint.pk),
    )
    for after in events.values_list("after", flat=True):
        after = after or {}
        if (
            after.get("up_to_seq") == checkpoint.seq
            and after.get("hash", checkpoint.hash) == checkpoint.hash
            and after.get("archive_sha256", "") == checkpoint.archive_sha256
        ):
            return True
    return False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as archive:
        while block := archive.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _archived_rows(checkpoint: AuditCheckpoint) -> Iterator[dict[str, Any]]:
    with gzip.open(checkpoint.archive, "rt", encoding="utf-8") as archive:
        yield from parse_jsonl(archive)


def _archive_here(checkpoint: AuditCheckpoint) -> tuple[bool, Problem | None, str]:
    """Whether the archive can be read here, else a problem or a note why not."""
    label = f"the checkpoint at seq {checkpoint.seq} (checkpoint id {checkpoint.pk})"
    if not checkpoint.archive_sha256:
        return False, None, f"{label} records no archive digest (written before digests were): archive not checked"
    path = Path(checkpoint.archive)
    if not path.is_file():
        return False, None, f"archive {path} of {label} is not on this machine: not checked"
    actual = file_sha256(path)
    if actual != checkpoint.archive_sha256:
        return (
            False,
            Problem(
                checkpoint.seq,
                None,
                f"archive {path} of {label} has sha256 {actual}, the checkpoint recorded "
                f"{checkpoint.archive_sha256}: the archive or the checkpoint was changed",
            ),
            "",
        )
    return True, None, ""


def _check_archive(checkpoint: AuditCheckpoint, previous_seq: int, previous_hash: str) -> tuple[Problem | None, str]:
    readable, problem, note = _archive_here(checkpoint)
    if not readable:
        return problem, note
    where = f"in archive {checkpoint.archive}"
    link: str | None  # an archived row's hash: None where the row lacks it, which breaks the link
    expected_seq, link = previous_seq, previous_hash
    for row in _archived_rows(checkpoint):
        expected_seq += 1
        seq, event_id = row.get("seq"), row.get("id")
        if seq != expected_seq:
            return Problem(expected_seq, None, f"archived event seq {expected_seq} is missing {where}"), ""
        if row.get("prev_hash") != link:
            return Problem(seq, event_id, f"archived event seq {seq} (id {event_id}) {where} does not link up"), ""
        link = row.get("hash")
    if expected_seq != checkpoint.seq or link != checkpoint.hash:
        return (
            Problem(
                checkpoint.seq,
                None,
                f"archive {checkpoint.archive} ends at seq {expected_seq}, but the checkpoint at seq {checkpoint.seq} "
                f"(checkpoint id {checkpoint.pk}) says it holds the events up to it with hash {checkpoint.hash}",
            ),
            "",
        )
    return None, ""


def archived_hash(checkpoint: AuditCheckpoint, seq: int) -> tuple[str | None, bool]:
    """The hash the archive of `checkpoint` holds for event `seq`, and whether
    the archive could be read here (present and matching its digest)."""
    readable, _, _ = _archive_here(checkpoint)
    if not readable:
        return None, False
    for row in _archived_rows(checkpoint):
        if row.get("seq") == seq:
            return row.get("hash"), True
    return None, True
