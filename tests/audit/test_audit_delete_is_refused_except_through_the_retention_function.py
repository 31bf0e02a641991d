"""Deleting events on PostgreSQL: only the retention function audit_purge()
may, only events past 90 days, only the prefix after the last checkpoint.
No setting, DO block or look-alike function opens another way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditCheckpoint, AuditEvent
from tests.support.auditing import aged_events, sealed_events, tamper, verify_audit

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers are PostgreSQL's"),
]

DIGEST = "a" * 64


def _refused(sql: str, params: list | None = None, match: str = "append-only") -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(DatabaseError, match=match), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])
    assert AuditEvent.objects.count() == before


@pytest.fixture
def old_and_new(department):
    """Three events from 400 days ago, then three from today, all sealed."""
    aged_events(3, department, days=400)
    sealed_events(3, department)
    return list(AuditEvent.objects.order_by("seq"))


def test_a_plain_delete_is_refused(old_and_new):
    _refused("DELETE FROM audit_auditevent WHERE id = %s", [old_and_new[0].pk])


def test_a_delete_after_setting_the_old_purge_flag_is_refused(old_and_new):
    _refused(
        "SET LOCAL countersign.audit_purge = 'on'; DELETE FROM audit_auditevent WHERE id = %s", [old_and_new[0].pk]
    )


def test_a_do_block_running_the_functions_own_statement_is_refused(old_and_new):
    _refused(
        "DO $$ DECLARE first_seq bigint := 1; last_seq bigint := 1; BEGIN "
        "DELETE FROM public.audit_auditevent WHERE seq >= first_seq AND seq <= last_seq; END $$"
    )


def test_a_look_alike_function_of_the_same_name_is_refused(old_and_new):
    _refused(
        "CREATE FUNCTION pg_temp.audit_purge(timestamptz, bigint, bigint, text, text) RETURNS bigint "
        "LANGUAGE plpgsql AS $$ DECLARE first_seq bigint := 1; last_seq bigint := 1; BEGIN "
        "DELETE FROM public.audit_auditevent WHERE seq >= first_seq AND seq <= last_seq; RETURN 0; END $$; "
        "SELECT pg_temp.audit_purge(now(), 1, 1, 'x', repeat('a', 64))"
    )


def test_a_statement_that_fakes_the_call_stack_in_a_comment_is_refused(old_and_new):
    """Run from a DO block, a statement's text shows in the call stack; this
    one's comment pretends to be the function's line."""
    _refused(
        'DO $$ BEGIN DELETE FROM audit_auditevent /*"\nPL/pgSQL function public.audit_purge(timestamp with time zone,'
        'bigint,bigint,text,text) line 1 at SQL statement\n"*/ WHERE seq = 1; END $$'
    )


def test_the_function_refuses_events_younger_than_ninety_days(old_and_new):
    _refused(
        "SELECT audit_purge(now(), 1, 4, 'x.jsonl.gz', %s)", [DIGEST], match="younger than 90 days are never purged"
    )
    _refused(
        "SELECT audit_purge(now() - interval '200 days', 1, 4, 'x.jsonl.gz', %s)",
        [DIGEST],
        match=f"event seq {old_and_new[3].seq} is not older",
    )


def test_the_function_refuses_anything_but_the_prefix_after_the_last_checkpoint(old_and_new):
    _refused(
        "SELECT audit_purge(now() - interval '200 days', 2, 3, 'x.jsonl.gz', %s)", [DIGEST], match="only the prefix"
    )


def test_the_function_refuses_a_purge_without_an_archive_digest(old_and_new):
    _refused("SELECT audit_purge(now() - interval '200 days', 1, 3, 'x.jsonl.gz', '')", match="archive's sha256")


def test_the_function_deletes_old_events_and_writes_the_checkpoint(old_and_new):
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit_purge(%s, 1, 3, 'x.jsonl.gz', %s)", [timezone.now() - timedelta(days=200), DIGEST])
        checkpoint = AuditCheckpoint.objects.get(pk=cursor.fetchone()[0])
    assert list(AuditEvent.objects.order_by("seq")) == old_and_new[3:]
    assert (checkpoint.seq, checkpoint.hash, checkpoint.purged_count) == (3, old_and_new[2].hash, 3)
    assert (checkpoint.archive, checkpoint.archive_sha256) == ("x.jsonl.gz", DIGEST)


def test_a_delete_done_anyway_is_named_by_seq(old_and_new):
    target = old_and_new[4]
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [target.pk])
    complaint = verify_audit()
    assert f"event seq {target.seq} is missing (the next one present is seq {target.seq + 1}, id " in complaint
