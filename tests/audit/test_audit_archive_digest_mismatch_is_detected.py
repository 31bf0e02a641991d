"""A purge archives the events it removes and its checkpoint records the
archive's sha256: verify_audit checks the archive whenever it is at hand."""

from __future__ import annotations

import gzip
import json
import os

import pytest
from django.db import connection

from audit.checkpoints import file_sha256
from audit.models import AuditCheckpoint
from audit.retention import purge_expired
from audit.verification import verify
from tests.support.auditing import aged_events, sealed_events, verify_audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def purged(department, settings, tmp_path):
    settings.AUDIT_ARCHIVE_DIR = tmp_path / "archive"
    aged_events(5, department, days=400)
    sealed_events(2, department)
    result = purge_expired()
    assert result is not None
    return AuditCheckpoint.objects.get(), result


def _rewrite_archive(path, change) -> None:
    with gzip.open(path, "rt") as archive:
        rows = [json.loads(line) for line in archive]
    change(rows)
    with gzip.open(path, "wt") as archive:
        archive.writelines(json.dumps(row) + "\n" for row in rows)


def test_a_purged_trail_with_its_archive_verifies(purged):
    result = verify()
    assert result.ok, result.problems
    assert not result.notes


def test_a_changed_archive_is_named_with_its_checkpoint(purged):
    checkpoint, result = purged
    _rewrite_archive(result.archive, lambda rows: rows[1].update(verb="test.innocent"))
    complaint = verify_audit()
    assert f"archive {result.archive} of the checkpoint at seq {checkpoint.seq} (checkpoint id {checkpoint.pk})" in (
        complaint
    )
    assert f"the checkpoint recorded {checkpoint.archive_sha256}" in complaint


def test_an_archive_missing_a_row_is_named_even_with_a_matching_digest(purged):
    """The digest binds the archive to the checkpoint; the rows must also run
    from the previous checkpoint to this one."""
    checkpoint, result = purged
    _rewrite_archive(result.archive, lambda rows: rows.pop(2))
    with connection.cursor() as cursor:
        # As if the checkpoint had been written over this archive (triggers off).
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE audit_auditcheckpoint SET archive_sha256 = %s WHERE id = %s",
            [file_sha256(result.archive), checkpoint.pk],
        )
        cursor.execute(
            "UPDATE audit_auditevent SET after = %s WHERE verb = 'audit.purged'",
            [json.dumps({"up_to_seq": checkpoint.seq, "archive_sha256": file_sha256(result.archive)})],
        )
    problems = verify().problems
    assert any(p.seq == 3 and "archived event seq 3 is missing" in p.message for p in problems), problems


def test_an_archive_moved_away_is_noted_not_failed(purged):
    _, result = purged
    os.remove(result.archive)
    verification = verify()
    assert verification.ok
    assert any("is not on this machine" in note for note in verification.notes)


def test_an_anchor_inside_the_purged_range_is_checked_against_the_archive(purged, tmp_path):
    _, result = purged
    with gzip.open(result.archive, "rt") as archive:
        third = json.loads(archive.readlines()[2])
    anchors = tmp_path / "anchors.log"
    anchors.write_text(f"{third['seq']} {'e' * 64}\n")
    complaint = verify_audit("--anchors", str(anchors))
    assert f"the purged event seq {third['seq']} had hash {third['hash']}" in complaint
