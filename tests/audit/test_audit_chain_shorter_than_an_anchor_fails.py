"""A head sent to a witness is a promise: the chain reaches at least that
far, with that hash. A chain cut short, or emptied, breaks it."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from audit.verification import verify
from audit.witness import Anchor
from tests.support.auditing import sealed_events, tamper, verify_audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def anchored(department, tmp_path):
    """Six sealed events, the head anchored in a witness file as the file witness writes it."""
    events = sealed_events(6, department)
    path = tmp_path / "anchors.log"
    path.write_text(
        f"2026-01-01T00:00:00+00:00 {events[3].seq} {events[3].hash}\n"
        f"2026-01-01T01:00:00+00:00 {events[5].seq} {events[5].hash}\n"
    )
    return events, path


def test_an_untouched_chain_agrees_with_its_anchors(anchored, capsys):
    _, path = anchored
    call_command("verify_audit", "--anchors", str(path))
    assert "2 anchors checked" in capsys.readouterr().out


def test_a_chain_cut_after_the_anchor_is_named_where_it_ends(anchored):
    events, path = anchored
    tamper("DELETE FROM audit_auditevent WHERE seq > %s", [events[3].seq])
    assert verify().ok  # what is left links up: only the anchor knows better
    complaint = verify_audit("--anchors", str(path))
    assert f"BROKEN at seq {events[4].seq}" in complaint
    assert f"the chain ends at seq {events[3].seq}, but {path} line 2 says event seq {events[5].seq}" in complaint


def test_an_emptied_chain_with_an_anchor_is_named(anchored):
    _, path = anchored
    tamper("DELETE FROM audit_auditevent")
    complaint = verify_audit("--anchors", str(path))
    assert "BROKEN at seq 1" in complaint and "the audit chain is empty" in complaint
    assert f"{path} line 1 says event seq" in complaint


def test_an_anchor_is_checked_against_a_replaced_event(anchored):
    events, _ = anchored
    tamper("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["f" * 64, events[3].pk])
    result = verify([Anchor(events[3].seq, events[3].hash, "the notary")])
    assert any(problem.event_id == events[3].pk and "the notary says" in problem.message for problem in result.problems)


def test_an_unreadable_anchor_file_is_refused_with_its_line(tmp_path):
    bad = tmp_path / "bad.log"
    bad.write_text("# heads\n\nnot an anchor\n")
    assert f"{bad} line 3" in verify_audit("--anchors", str(bad))
