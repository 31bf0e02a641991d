"""Rolling back from the action page: the form shows for a succeeded,
reversible action inside its reversal window, to the department's leads;
it asks services.request_rollback and shows its refusals; the page shows
each execution and the rollback's progress."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from approvals import services
from approvals.models import Action, Execution, ExecutionKind, Executor
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, DepartmentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
REFUND_UNDO = {"refund_id": "R-5521"}


def logged_in(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def status_of(action: Action) -> str:
    action.refresh_from_db()
    return action.status


def rollback_url(action: Action) -> str:
    return f"/actions/{action.pk}/rollback/"


@pytest.fixture
def succeeded(agent, lead, propose) -> Action:
    """An agent-executed action, approved by a lead and reported done by its agent."""
    action = propose()
    services.approve(action.pk, lead)
    return services.report_result(
        action.pk, agent, succeeded=True, detail={"refund_id": "R-5521", "state": "refunded"}, undo=REFUND_UNDO
    )


@pytest.fixture
def succeeded_webhook(agent, lead) -> Action:
    """A webhook action carried out by the gateway: one failed attempt, then success."""
    action_type = ActionTypeFactory(
        slug="crm.update_lead_owner", executor=Executor.WEBHOOK, webhook_url="https://crm.example/hook"
    )
    GrantFactory(agent=agent, action_type=action_type)
    action, _ = services.propose(agent, action_type, payload={"note": "to Kim"}, reasoning="Kim owns the region.")
    services.approve(action.pk, lead)
    return services.finish_dispatch(
        services.start_dispatch(action.pk).pk, succeeded=True, response={"ok": True}, undo={"previous": "Lee"}
    )


# ---------------------------------------------------------------- the form


def test_a_lead_sees_the_rollback_form_with_the_window(lead, succeeded):
    html = logged_in(lead).get(f"/actions/{succeeded.pk}/").content.decode()
    assert f'action="/actions/{succeeded.pk}/rollback/"' in html
    assert "Reversible until" in html


def test_the_form_is_not_offered_outside_succeeded_reversible_actions_in_their_window(lead, propose, succeeded):
    pending = propose()
    assert "/rollback/" not in logged_in(lead).get(f"/actions/{pending.pk}/").content.decode()

    Execution.objects.filter(action=succeeded).update(finished_at=timezone.now() - timedelta(minutes=61))
    html = logged_in(lead).get(f"/actions/{succeeded.pk}/").content.decode()
    assert "/rollback/" not in html
    assert "The reversal window of this action closed at" in html


def test_an_irreversible_action_offers_no_rollback(lead, succeeded):
    succeeded.action_type.reversible = False
    succeeded.action_type.save()
    html = logged_in(lead).get(f"/actions/{succeeded.pk}/").content.decode()
    assert "/rollback/" not in html and "not reversible" in html


def test_a_backup_approver_sees_why_they_cannot_roll_back(department, succeeded):
    backup = UserFactory(username="bea-backup")
    department.backup_approvers.add(backup)
    html = logged_in(backup).get(f"/actions/{succeeded.pk}/").content.decode()
    assert "/rollback/" not in html
    assert "Only the leads of Finance may roll this action back." in html


# ---------------------------------------------------------------- asking for it


def test_a_lead_requests_the_rollback_with_a_reason(lead, succeeded):
    response = logged_in(lead).post(rollback_url(succeeded), {"reason": "Refunded the wrong order."}, follow=True)
    assert response.redirect_chain == [(f"/actions/{succeeded.pk}/", 302)]
    assert status_of(succeeded) == Status.ROLLBACK_REQUESTED
    event = AuditEvent.objects.get(verb="action.rollback_requested")
    assert (event.actor_label, event.after["reason"]) == ("lena-lead", "Refunded the wrong order.")
    slug = succeeded.action_type.slug
    assert messages_of(response) == [
        f"Rollback of {slug} requested: its agent sees rollback_requested and reports the result."
    ]
    html = response.content.decode()
    assert 'class="badge status-rollback_requested">Rollback requested' in html
    assert "Rollback requested by lena-lead at" in html and "Refunded the wrong order." in html
    assert "/rollback/" not in html  # asked once


def test_a_webhook_rollback_says_the_gateway_undoes_it(lead, succeeded_webhook):
    response = logged_in(lead).post(rollback_url(succeeded_webhook), {"reason": "Wrong owner."}, follow=True)
    assert messages_of(response) == [
        "Rollback of crm.update_lead_owner requested: the gateway asks the target to undo it."
    ]
    assert status_of(succeeded_webhook) == Status.ROLLBACK_REQUESTED


def test_it_answers_htmx_with_the_panel_the_flash_and_the_executions(lead, succeeded):
    html = logged_in(lead).post(rollback_url(succeeded), {"reason": "Wrong order."}, **HTMX).content.decode()
    assert html.lstrip().startswith('<section id="decision-panel"')
    assert "Rollback requested" in html
    assert '<section id="executions" hx-swap-oob="true">' in html
    assert '<div id="flash" class="flash" role="status" aria-live="polite" hx-swap-oob="true">' in html


def test_a_rollback_needs_a_reason(lead, succeeded):
    response = logged_in(lead).post(rollback_url(succeeded), {"reason": "  "}, follow=True)
    assert messages_of(response) == ["Say why this action must be rolled back."]
    assert status_of(succeeded) == Status.SUCCEEDED


def test_it_shows_the_refusal_when_the_window_has_closed(lead, succeeded):
    Execution.objects.filter(action=succeeded).update(finished_at=timezone.now() - timedelta(minutes=61))
    response = logged_in(lead).post(rollback_url(succeeded), {"reason": "Too late?"}, follow=True)
    assert messages_of(response) == ["The reversal window of this action has closed."]
    assert status_of(succeeded) == Status.SUCCEEDED


def test_it_shows_the_refusal_for_an_irreversible_action(lead, succeeded):
    succeeded.action_type.reversible = False
    succeeded.action_type.save()
    response = logged_in(lead).post(rollback_url(succeeded), {"reason": "Undo."}, follow=True)
    assert messages_of(response) == [f"{succeeded.action_type.slug} is not reversible."]


def test_it_refuses_to_roll_back_what_has_not_succeeded(lead, propose):
    pending = propose()
    response = logged_in(lead).post(rollback_url(pending), {"reason": "Undo."}, follow=True)
    assert messages_of(response) == ["Only a succeeded action can be rolled back; this one is pending."]
    assert status_of(pending) == Status.PENDING


def test_it_refuses_a_second_request(lead, other_lead, succeeded):
    services.request_rollback(succeeded.pk, other_lead, reason="Wrong order.")
    response = logged_in(lead).post(rollback_url(succeeded), {"reason": "Me too."}, follow=True)
    assert messages_of(response) == ["Only a succeeded action can be rolled back; this one is rollback requested."]
    assert AuditEvent.objects.filter(verb="action.rollback_requested").count() == 1


def test_a_backup_approver_is_refused(department, succeeded):
    backup = UserFactory(username="bea-backup")
    department.backup_approvers.add(backup)
    response = logged_in(backup).post(rollback_url(succeeded), {"reason": "Undo."}, follow=True)
    assert messages_of(response) == ["Only the leads of this action's department may decide it."]
    assert status_of(succeeded) == Status.SUCCEEDED


def test_a_lead_of_another_department_cannot_find_the_action(succeeded):
    stranger = UserFactory(username="sven-support")
    DepartmentFactory(name="Support", slug="support", leads=[stranger])
    assert logged_in(stranger).post(rollback_url(succeeded), {"reason": "Undo."}).status_code == 404
    assert status_of(succeeded) == Status.SUCCEEDED


def test_the_rollback_refuses_a_post_without_the_csrf_token(lead, succeeded):
    client = logged_in(lead, enforce_csrf_checks=True)
    assert client.post(rollback_url(succeeded), {"reason": "Undo."}).status_code == 403
    assert status_of(succeeded) == Status.SUCCEEDED
    client.get(f"/actions/{succeeded.pk}/")
    token = client.cookies["csrftoken"].value
    client.post(rollback_url(succeeded), {"reason": "Undo.", "csrfmiddlewaretoken": token})
    assert status_of(succeeded) == Status.ROLLBACK_REQUESTED


# ---------------------------------------------------------------- the executions


def test_the_page_shows_each_attempt_with_its_outcome_response_and_error(lead, agent, succeeded_webhook):
    first = Execution.objects.get(action=succeeded_webhook)
    Execution.objects.create(
        action=succeeded_webhook,
        kind=ExecutionKind.DISPATCH,
        attempt=first.attempt + 1,
        outcome="failed",
        error="HTTP 503 from https://crm.example/hook",
        finished_at=timezone.now(),
    )
    html = logged_in(lead).get(f"/actions/{succeeded_webhook.pk}/").content.decode()
    assert "Dispatch #1" in html and "Dispatch #2" in html
    assert 'class="badge outcome-succeeded">Succeeded' in html
    assert 'class="badge outcome-failed">Failed' in html
    assert "HTTP 503 from https://crm.example/hook" in html
    assert "&quot;ok&quot;: true" in html  # the response, as JSON
    assert "&quot;previous&quot;: &quot;Lee&quot;" in html  # kept for the rollback


def test_the_page_shows_a_finished_rollback(lead, succeeded):
    services.request_rollback(succeeded.pk, lead, reason="Wrong order.")
    services.finish_rollback(succeeded.pk, succeeded=True, response={"refund_id": "R-5521", "state": "reversed"})
    html = logged_in(lead).get(f"/actions/{succeeded.pk}/").content.decode()
    assert 'class="badge status-rolled_back">Rolled back' in html
    assert "Rollback #1" in html
    assert "&quot;state&quot;: &quot;reversed&quot;" in html
    assert '/rollback/"' not in html
