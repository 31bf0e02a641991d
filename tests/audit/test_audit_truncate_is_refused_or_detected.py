"""TRUNCATE of the audit trail: PostgreSQL refuses it; done anyway, the
empty chain never verifies."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from tests.support.auditing import sealed_events, tamper, verify_audit

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers are PostgreSQL's")
@pytest.mark.parametrize(
    "table", ["audit_auditevent", "audit_auditcheckpoint", "approvals_action, audit_auditevent CASCADE"]
)
def test_postgresql_refuses_truncate(department, table):
    sealed_events(3, department)
    with pytest.raises(DatabaseError, match="TRUNCATE of audit_"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {table}")
    assert AuditEvent.objects.count() == 3


def test_a_truncated_trail_does_not_verify(department):
    sealed_events(3, department)
    tamper("DELETE FROM audit_auditevent" if connection.vendor != "postgresql" else "TRUNCATE audit_auditevent")
    complaint = verify_audit()
    assert "BROKEN at seq 1" in complaint and "the audit chain is empty" in complaint
