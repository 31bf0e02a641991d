"""audit.log.record_insert: a new row and its event, in one statement on
PostgreSQL, stored as save() and record() store them. A proposal is written
this way (tests/api/test_api_proposals_answer_as_before.py compares every
kind of proposal's rows with a reference, on both backends)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from approvals.models import Action
from approvals.rules.lifecycle import Status
from approvals.vocabulary import Verdict
from audit.log import Actor, record_insert
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def new_action(agent: Any) -> Action:
    action_type = ActionTypeFactory(slug="crm.note")
    return Action(
        agent=agent,
        action_type=action_type,
        department=agent.department,
        status=Status.PENDING,
        verdict=Verdict.PENDING,
    )


def test_the_row_and_its_event_are_stored_and_the_instances_know_it(agent):
    action = new_action(agent)
    with CaptureQueriesContext(connection) as captured:
        event = record_insert("action.proposed", action, actor=Actor.agent(agent), after={"status": "pending"})
    writes = [q["sql"] for q in captured.captured_queries if "INSERT INTO" in q["sql"]]
    assert len(writes) == (1 if connection.vendor == "postgresql" else 2)
    stored = Action.objects.get(pk=action.pk)
    assert (stored.status, stored.department_id, stored.created_at) == (
        Status.PENDING,
        agent.department_id,
        action.created_at,
    )
    assert stored.updated_at == action.updated_at  # auto_now, filled as save() fills it
    assert AuditEvent.objects.get(pk=event.pk).object_id == str(action.pk)
    assert event.verb == "action.proposed" and event.after == {"status": "pending"}
    assert not action._state.adding and not event._state.adding


def test_a_model_with_a_save_receiver_is_saved_by_save_so_the_receiver_hears_it(agent):
    heard: list[tuple[object, bool]] = []

    def receiver(sender: Any, instance: Any, created: bool, **_: Any) -> None:
        heard.append((instance.pk, created))

    action = new_action(agent)
    post_save.connect(receiver, sender=Action)
    try:
        record_insert("action.proposed", action, actor=Actor.agent(agent))
    finally:
        post_save.disconnect(receiver, sender=Action)
    assert heard == [(action.pk, True)]


def test_a_row_without_its_key_is_refused_before_anything_is_written(agent):
    department = agent.department
    department.pk = None
    with pytest.raises(ValueError, match="its key must be set"):
        record_insert("department.created", department, actor=Actor.system())
    assert not AuditEvent.objects.exists()
