"""The global pause in the admin: flipping it needs a reason, and each flip
is an audit event."""

from __future__ import annotations

from approvals.models import GatewayState
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.admin.test_admin_pages import admin_url, changeform_data


def save_state(client, **changes):
    url = admin_url(GatewayState, "change", GatewayState.current().pk)
    return client.post(url, changeform_data(client.get(url), **changes))


def test_it_refuses_to_pause_without_a_reason(admin_client, db):
    response = save_state(admin_client, paused="on")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["why"] == ["Say why you are pausing the gateway."]
    assert not GatewayState.current().paused
    assert not AuditEvent.objects.filter(verb__startswith="gateway.").exists()


def test_it_pauses_with_the_reason_and_records_it(admin_client, admin_user, db):
    assert save_state(admin_client, paused="on", why="Incident 42: payments double-booked.").status_code == 302
    state = GatewayState.current()
    assert (state.paused, state.reason, state.changed_by) == (True, "Incident 42: payments double-booked.", admin_user)
    assert state.changed_at is not None
    event = AuditEvent.objects.get(verb="gateway.paused")
    assert (event.before, event.after) == (
        {"paused": False},
        {"paused": True, "reason": "Incident 42: payments double-booked."},
    )
    assert event.actor_label == admin_user.username


def test_it_resumes_with_a_reason(admin_client, db):
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True, "reason": "Incident."})
    response = save_state(admin_client, paused=None, why="Incident closed.")  # None: an unchecked box, not posted
    assert response.status_code == 302
    assert not GatewayState.current().paused
    assert AuditEvent.objects.get(verb="gateway.resumed").after == {"paused": False, "reason": "Incident closed."}


def test_it_keeps_the_reason_when_the_switch_is_left_alone(admin_client, db):
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True, "reason": "Incident."})
    save_state(admin_client, paused="on")
    assert GatewayState.current().reason == "Incident."
    assert not AuditEvent.objects.filter(verb__startswith="gateway.").exists()


def test_it_creates_the_single_row_when_there_is_none(admin_client, db):
    url = admin_url(GatewayState, "add")
    response = admin_client.post(url, changeform_data(admin_client.get(url), paused="on", why="Before launch."))
    assert response.status_code == 302
    assert GatewayState.objects.get().pk == 1
    assert GatewayState.current().paused


def test_a_pause_in_the_admin_blocks_new_proposals(admin_client, propose):
    save_state(admin_client, paused="on", why="Drill.")
    action = propose()
    assert (action.status, action.verdict_code) == (Status.BLOCKED, "gateway_paused")
