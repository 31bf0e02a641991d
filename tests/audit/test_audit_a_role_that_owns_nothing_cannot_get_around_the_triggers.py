"""The deployment docs/audit.md recommends: migrate as the owner, run the
application as a role that owns nothing. Such a role can switch no trigger
off and delete no event, except through audit_purge(). (The tests otherwise
run as a superuser, who can do anything: that is what anchors are for.)"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditCheckpoint, AuditEvent
from tests.support.auditing import aged_events, sealed_events

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="roles and triggers are PostgreSQL's"),
]


@pytest.fixture
def as_application_role(department):
    """Old and new events, then the rest of the test as a role with only
    SELECT/INSERT/UPDATE/DELETE on the audit tables and EXECUTE on the purge
    function. Created in the test's transaction, so it vanishes with it."""
    aged_events(3, department, days=400)
    sealed_events(2, department)
    role = f"countersign_app_{secrets.token_hex(4)}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON audit_auditevent, audit_auditcheckpoint TO {role}")
        cursor.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT EXECUTE ON FUNCTION audit_purge(timestamptz, bigint, bigint, text, text) TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")
    return role


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("SET LOCAL session_replication_role = replica", "permission denied"),
        ("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only", "must be owner"),
        ("DROP TRIGGER audit_event_no_truncate ON audit_auditevent", "must be owner"),
        (
            "CREATE OR REPLACE FUNCTION audit_run_by_purge(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
            "must be owner|permission denied for schema",
        ),
        ("DELETE FROM audit_auditevent", "append-only"),
        ("TRUNCATE audit_auditevent", "permission denied"),
        ("UPDATE audit_auditevent SET verb = 'x'", "append-only"),
    ],
)
def test_it_cannot_switch_off_or_get_past_the_triggers(as_application_role, sql, refusal):
    with pytest.raises(DatabaseError, match=refusal), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert AuditEvent.objects.count() == 5


def test_it_purges_old_events_through_the_function_only(as_application_role):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT audit_purge(%s, 1, 3, 'x.jsonl.gz', %s)", [timezone.now() - timedelta(days=200), "a" * 64]
        )
    assert AuditCheckpoint.objects.get().seq == 3
    assert AuditEvent.objects.count() == 2
