"""Rewriting an event: PostgreSQL refuses it; done anyway (triggers off, or
another backend), verify_audit names the event."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent
from tests.support.auditing import sealed_events, tamper, verify_audit

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="triggers are PostgreSQL's")
def test_postgresql_refuses_an_update_of_a_sealed_event(department):
    target = sealed_events(4, department)[1]
    with pytest.raises(DatabaseError, match="UPDATE of event"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_label = 'someone else' WHERE id = %s", [target.pk])
    assert AuditEvent.objects.get(pk=target.pk).actor_label == target.actor_label


def test_an_updated_event_is_named_by_seq_and_id(department):
    target = sealed_events(4, department)[2]
    tamper("UPDATE audit_auditevent SET actor_label = 'someone else' WHERE id = %s", [target.pk])
    complaint = verify_audit()
    assert f"BROKEN at seq {target.seq} (id {target.pk})" in complaint
    assert "content was changed" in complaint
