"""A checkpoint says "events up to here were purged, verify from here". Only
the retention function writes one on PostgreSQL; a forged one (another
backend, triggers off) is detected and named."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditCheckpoint
from tests.support.auditing import checkpoints, forge_checkpoint, sealed_events, tamper, verify_audit

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers are PostgreSQL's")
def test_postgresql_refuses_a_checkpoint_not_written_by_the_retention_function(department):
    events = sealed_events(4, department)
    with pytest.raises(DatabaseError, match="written only by audit_purge"), transaction.atomic():
        AuditCheckpoint.objects.create(seq=events[-1].seq, hash=events[-1].hash, purged_count=4, archive="x")
    refused = pytest.raises(DatabaseError, match="written only by audit_purge")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditcheckpoint (seq, hash, purged_count, archive, archive_sha256, created_at) "
            "VALUES (%s, %s, 4, 'x', %s, %s)",
            [events[-1].seq, events[-1].hash, "a" * 64, timezone.now()],
        )
    assert not AuditCheckpoint.objects.exists()


def test_a_checkpoint_forged_at_the_head_over_a_deleted_event_is_named(department):
    """Yesterday's hole: delete the last event, claim it was purged, and the
    chain verified from the claimed checkpoint, over nothing."""
    events = sealed_events(5, department)
    head = events[-1]
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [head.pk])
    forge_checkpoint(head.seq, head.hash, head.seq)
    (forged,) = checkpoints()
    complaint = verify_audit()
    assert f"checkpoint at seq {head.seq} (checkpoint id {forged.pk})" in complaint
    assert "the chain ends at the checkpoint" in complaint
    assert "the retention job did not write it" in complaint


def test_a_checkpoint_forged_over_live_events_is_named(department):
    events = sealed_events(5, department)
    forge_checkpoint(events[2].seq, events[2].hash, events[2].seq)
    complaint = verify_audit()
    assert f"event seq {events[0].seq} (id {events[0].pk}) is still here" in complaint


def test_a_checkpoint_forged_in_the_middle_of_a_shortened_chain_is_named(department):
    events = sealed_events(6, department)
    tamper("DELETE FROM audit_auditevent WHERE seq <= %s", [events[2].seq])
    forge_checkpoint(events[2].seq, events[2].hash, events[2].seq)
    (forged,) = checkpoints()
    complaint = verify_audit()
    assert f"BROKEN at seq {events[2].seq}" in complaint
    assert f"checkpoint id {forged.pk}) has no audit.purged event after it" in complaint
