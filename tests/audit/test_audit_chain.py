from __future__ import annotations

import itertools

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit import chain
from audit.log import Actor, record
from audit.models import AppendOnlyError, AuditEvent
from audit.verification import verify

pytestmark = pytest.mark.django_db


def _events(n: int, obj) -> list[AuditEvent]:
    return [record("test.happened", obj, actor=Actor.system(), after={"n": i, "text": "naïve ü"}) for i in range(n)]


@pytest.fixture
def sealed_chain(department):
    events = _events(6, department)
    chain.seal_all()
    return [AuditEvent.objects.get(pk=e.pk) for e in events]


def _raw(sql: str, params: list | None = None) -> None:
    """Tamper as an attacker with database access would: triggers switched off."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params or [])


def test_it_seals_events_in_order_with_linked_hashes(sealed_chain):
    seqs = [e.seq for e in sealed_chain]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for earlier, later in itertools.pairwise(sealed_chain):
        assert later.prev_hash == earlier.hash
    assert verify().ok


def test_it_verifies_an_untouched_chain_and_prints_the_head(sealed_chain, capsys):
    call_command("verify_audit", "--head")
    seq, digest = capsys.readouterr().out.split()
    assert int(seq) == sealed_chain[-1].seq and digest == sealed_chain[-1].hash


def test_it_detects_an_edited_row_at_that_row(sealed_chain):
    target = sealed_chain[3]
    _raw("UPDATE audit_auditevent SET verb = 'test.innocent' WHERE id = %s", [target.pk])
    result = verify()
    assert not result.ok and result.broken_seq == target.seq
    assert "content was changed" in result.problem
    with pytest.raises(CommandError, match=f"seq {target.seq}"):
        call_command("verify_audit", "--no-seal")


def test_it_detects_an_edited_json_field(sealed_chain):
    target = sealed_chain[2]
    new_after = '{"n": 99, "text": "naïve ü"}'
    _raw("UPDATE audit_auditevent SET after = %s WHERE id = %s", [new_after, target.pk])
    assert verify().broken_seq == target.seq


def test_it_detects_a_deleted_row_where_it_was(sealed_chain):
    target = sealed_chain[2]
    _raw("DELETE FROM audit_auditevent WHERE id = %s", [target.pk])
    result = verify()
    assert not result.ok and result.broken_seq == target.seq
    assert "missing" in result.problem


def test_it_detects_two_swapped_rows_at_the_first(sealed_chain):
    first, second = sealed_chain[1], sealed_chain[4]
    # Swap their places in the chain, hashes and all.
    _raw("UPDATE audit_auditevent SET seq = -1 WHERE id = %s", [first.pk])
    _raw("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [first.seq, second.pk])
    _raw("UPDATE audit_auditevent SET seq = %s WHERE id = %s", [second.seq, first.pk])
    result = verify()
    assert not result.ok and result.broken_seq == first.seq


def test_it_detects_a_rewritten_tail_against_an_anchor(sealed_chain):
    anchor = f"{sealed_chain[-1].seq}:{sealed_chain[-1].hash}"
    _raw("UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["f" * 64, sealed_chain[-1].pk])
    with pytest.raises(CommandError):
        call_command("verify_audit", "--no-seal", "--expect", anchor)


def test_the_model_layer_refuses_changes(sealed_chain):
    event = sealed_chain[0]
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(verb="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers are PostgreSQL's")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET verb = 'x' WHERE id = %s",
        "UPDATE audit_auditevent SET hash = '' WHERE id = %s",
        "UPDATE audit_auditevent SET seq = NULL WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ],
)
def test_postgresql_refuses_a_plain_update_or_delete(sealed_chain, sql):
    event = sealed_chain[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).hash == event.hash
    assert verify().ok


@pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers are PostgreSQL's")
def test_postgresql_refuses_changing_content_while_sealing(department):
    event = record("test.happened", department, actor=Actor.system())
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET seq = 1, hash = 'x', verb = 'forged' WHERE id = %s", [event.pk])
