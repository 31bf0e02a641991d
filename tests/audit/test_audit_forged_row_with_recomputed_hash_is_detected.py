"""A forger who knows the hash formula rewrites an event, recomputes its
hash and re-links the next event to it. Because each hash covers the
previous hash, the next event's own hash no longer matches: caught there,
on PostgreSQL and on the embedded default (SQLite)."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from audit.verification import verify
from tests.support.auditing import relink, sealed_events, verify_audit

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_a_forged_row_with_a_recomputed_hash_and_a_relinked_successor_is_named(department):
    events = sealed_events(6, department)
    forged, successor = events[2], events[3]
    relink(forged, verb="test.innocent", actor_label="nobody")
    assert AuditEvent.objects.get(pk=successor.pk).prev_hash == AuditEvent.objects.get(pk=forged.pk).hash
    result = verify()
    assert (result.broken_seq, result.broken_id) == (successor.seq, successor.pk)
    complaint = verify_audit()
    assert f"BROKEN at seq {successor.seq} (id {successor.pk})" in complaint
    assert f"seq {forged.seq} (id {forged.pk})" in complaint


def test_a_forged_last_row_is_caught_by_an_anchor_of_the_head(department, tmp_path):
    """The newest event has no successor to betray it: the anchored head does."""
    events = sealed_events(4, department)
    anchors = tmp_path / "anchors.log"
    anchors.write_text(f"2026-01-01T00:00:00+00:00 {events[-1].seq} {events[-1].hash}\n")
    relink(events[-1], verb="test.innocent")
    complaint = verify_audit("--anchors", str(anchors))
    assert f"event seq {events[-1].seq} (id {events[-1].pk}) has hash" in complaint
