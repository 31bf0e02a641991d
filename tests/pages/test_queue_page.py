"""/queue/: what a lead sees waiting (and in which order), its fixed cost
however long the queue, the shadow lane, the undo-window vetoes and bulk
approval, through the Django test client."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.models import Action, Decision, DecisionVerdict, NotificationMode, NotificationPreference, Risk
from approvals.rules.lifecycle import Status
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def lead_client(client: Client, lead, department) -> Client:
    client.force_login(lead)
    return client


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="action-([0-9a-f-]{36})"', html)


def set_fields(action: Action, **fields: Any) -> Action:
    """Set what routing and escalation would have set (they run after commit)."""
    Action.objects.filter(pk=action.pk).update(**fields)
    action.refresh_from_db()
    return action


@pytest.fixture
def auto_approved(agent):
    """An executor-tier proposal approved by policy, inside its 5-minute undo window."""
    action_type = ActionTypeFactory(slug="crm.update_lead_owner", reversible=True, undo_window_seconds=300)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.EXECUTOR)
    action, _ = services.propose(
        agent, action_type, payload={"note": "reassign"}, reasoning="Owner left.", confidence=Decimal("0.99")
    )
    assert action.status == Status.APPROVED and action.dispatch_after > timezone.now()
    return action


# ---------------------------------------------------------------- what and in which order


def test_it_lists_the_most_urgent_first(lead_client, propose):
    now = timezone.now()
    old_low = set_fields(propose(), priority=0, created_at=now - timedelta(hours=3))
    new_low = set_fields(propose(), priority=0, created_at=now - timedelta(hours=1))
    high = set_fields(propose(risk=Risk.HIGH), priority=200)
    high_due_sooner = set_fields(propose(risk=Risk.HIGH), priority=200, sla_deadline=now + timedelta(minutes=5))
    high_due_later = set_fields(propose(risk=Risk.HIGH), priority=200, sla_deadline=now + timedelta(hours=2))
    escalated_low = set_fields(propose(), priority=0, escalated_at=now, sla_deadline=now - timedelta(minutes=1))

    html = lead_client.get("/queue/").content.decode()

    expected = [escalated_low, high_due_sooner, high_due_later, high, old_low, new_low]
    assert row_ids(html) == [str(action.pk) for action in expected]


def test_it_shows_each_rows_facts_and_flags(lead_client, propose):
    now = timezone.now()
    action = propose(
        amount=Decimal("1250.00"),
        confidence=Decimal("0.870"),
        reasoning="Refund the duplicate charge on order 1187. " + "The customer was billed twice. " * 5,
    )
    set_fields(action, escalated_at=now, sla_deadline=now - timedelta(minutes=3))

    html = lead_client.get("/queue/").content.decode()
    row = html[html.index(f'id="action-{action.pk}"') :].split("</tr>")[0]

    assert "Refund Bot" in row
    assert action.action_type.slug in row
    assert "1,250.00" in row and "0.87" in row
    assert "Refund the duplicate charge on order 1187." in row
    assert "The customer was billed twice. " * 5 not in row  # only the start of the reasoning
    assert "Escalated" in row and "overdue" in row
    assert 'class="row risk-low escalated overdue"' in row
    assert re.search(r'<strong id="pending-count">1</strong>', html)


def test_it_shows_only_the_departments_the_user_leads(client, propose):
    finance_action = propose()
    stranger = UserFactory(username="lars-lead")
    DepartmentFactory(name="Legal", slug="legal", leads=[stranger])
    client.force_login(stranger)

    html = client.get("/queue/").content.decode()

    assert str(finance_action.pk) not in html
    assert re.search(r'<strong id="pending-count">0</strong>', html)


def test_it_shows_a_backup_approver_only_what_escalated_to_them(client, department, propose):
    backup = UserFactory(username="bea-backup")
    department.backup_approvers.add(backup)
    waiting, overdue = propose(), propose()
    client.force_login(backup)

    assert row_ids(client.get("/queue/").content.decode()) == []

    set_fields(overdue, escalated_at=timezone.now())
    assert row_ids(client.get("/queue/").content.decode()) == [str(overdue.pk)]
    assert str(waiting.pk) not in client.get("/queue/").content.decode()


def test_it_shows_the_agents_owner_her_agents_row_without_any_decision(client, owner, department, propose):
    department.leads.add(owner)
    action = propose()
    client.force_login(owner)

    row = client.get("/queue/").content.decode().split(f'id="action-{action.pk}"')[1].split("</tr>")[0]

    assert "Your agent" in row
    assert 'class="approve"' not in row
    assert "Reject" not in row


def test_it_sends_a_visitor_to_log_in(client):
    response = client.get("/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_answers_htmx_with_the_table_alone(lead_client, propose):
    action = propose()
    html = lead_client.get("/queue/", **HTMX).content.decode()
    assert "<html" not in html and 'id="pending-rows"' in html
    assert row_ids(html) == [str(action.pk)]


# ---------------------------------------------------------------- a long queue


def bulk_pending(agent, count: int) -> None:
    action_type = ActionTypeFactory(slug="payments.refund")
    now = timezone.now()
    Action.objects.bulk_create(
        Action(
            agent=agent,
            action_type=action_type,
            department_id=agent.department_id,
            status=Status.PENDING,
            payload={"note": str(n)},
            reasoning=f"Refund number {n}.",
            verdict="pending",
            priority=n % 7,
            sla_deadline=now + timedelta(minutes=n % 500),
            escalated_at=now if n % 1000 == 0 else None,
        )
        for n in range(count)
    )


def queries_for(client: Client, url: str, **headers: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    assert response.status_code == 200
    return len(captured), response.content.decode()


def test_it_reads_ten_thousand_pending_actions_in_a_fixed_number_of_queries(
    lead_client, agent, django_assert_max_num_queries
):
    bulk_pending(agent, 3)
    few, _ = queries_for(lead_client, "/queue/")
    bulk_pending(agent, 10_000)

    with django_assert_max_num_queries(few):
        html = lead_client.get("/queue/").content.decode()
    with django_assert_max_num_queries(few):
        partial = lead_client.get("/queue/?page=40", **HTMX).content.decode()

    assert len(row_ids(html)) == 50 and len(row_ids(partial)) == 50
    assert re.search(r'<strong id="pending-count">10003</strong>', html)
    assert "Page 1 of 201" in html
    # Escalated first, whatever their priority.
    first = Action.objects.get(pk=row_ids(html)[0])
    assert first.escalated_at is not None


# ---------------------------------------------------------------- deciding from a row


def test_it_approves_a_row_and_answers_htmx_with_its_removal_and_the_counters(lead_client, propose):
    action, other = propose(), propose()

    response = lead_client.post(f"/actions/{action.pk}/approve/", {"lane": "pending"}, **HTMX)

    html = response.content.decode()
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED
    assert row_ids(html) == []  # the row is swapped for nothing
    assert 'id="queue-counters" class="counters" hx-swap-oob="true"' in html
    assert re.search(r'<strong id="pending-count">1</strong>', html)
    assert f"Approved {action.action_type.slug}." in html
    assert Action.objects.get(pk=other.pk).status == Status.PENDING


def test_it_rejects_a_row_with_a_reason_and_redirects_without_javascript(lead_client, propose):
    action = propose()

    response = lead_client.post(f"/actions/{action.pk}/reject/", {"lane": "pending", "reason": "Wrong order."})

    assert response.status_code == 302 and response["Location"] == "/queue/"
    action.refresh_from_db()
    assert action.status == Status.REJECTED
    assert action.decisions.get().comment == "Wrong order."
    assert "Rejected" in lead_client.get("/queue/").content.decode()


def test_it_keeps_a_row_and_says_why_when_a_reject_has_no_reason(lead_client, propose):
    action = propose()

    html = lead_client.post(
        f"/actions/{action.pk}/reject/", {"lane": "pending", "reason": " "}, **HTMX
    ).content.decode()

    assert row_ids(html) == [str(action.pk)]
    assert "Say why you reject it" in html
    assert Action.objects.get(pk=action.pk).status == Status.PENDING


def test_it_refuses_a_decision_without_a_csrf_token(lead, department, propose):
    action = propose()
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)

    response = client.post(f"/actions/{action.pk}/approve/", {"lane": "pending"})

    assert response.status_code == 403
    assert Action.objects.get(pk=action.pk).status == Status.PENDING
    # With the page's token, the same post goes through.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get("/queue/").content.decode())[1]
    client.post(f"/actions/{action.pk}/approve/", {"lane": "pending", "csrfmiddlewaretoken": token})
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED


# ---------------------------------------------------------------- bulk approval


def test_it_approves_selected_rows_one_by_one_and_reports_each(lead_client, lead, department, propose):
    low = propose()
    medium = propose(risk=Risk.MEDIUM)
    decided = propose()
    services.approve(decided.pk, UserFactory(username="omar-lead"))
    own_agent = AgentFactory(slug="lenas-bot", owner=lead, department=department)
    own_type = ActionTypeFactory()
    GrantFactory(agent=own_agent, action_type=own_type, tier=Tier.CONTRIBUTOR)
    own, _ = services.propose(own_agent, own_type, payload={}, reasoning="Mine.", confidence=Decimal("0.9"))

    ids = [low.pk, medium.pk, decided.pk, own.pk, "not-an-id"]
    html = lead_client.post("/queue/bulk-approve/", {"action": ids}, **HTMX).content.decode()

    statuses = dict(Action.objects.filter(pk__in=ids[:4]).values_list("pk", "status"))
    assert statuses == {
        low.pk: Status.APPROVED,
        medium.pk: Status.PENDING,
        decided.pk: Status.APPROVED,
        own.pk: Status.PENDING,
    }
    results = dict(re.findall(r'data-action="([^"]+)"><strong>(\w+)</strong>', html))
    assert results == {
        str(low.pk): "Approved",
        str(medium.pk): "Refused",
        str(decided.pk): "Refused",
        str(own.pk): "Refused",
        "not-an-id": "Refused",
    }
    assert "Medium risk: needs review. Open it to decide." in html
    assert "Not in your queue any more." in html  # decided meanwhile, or never there
    assert "You own this agent" in html
    # The approved row goes; the counters follow.
    assert f'<tr id="action-{low.pk}" data-gone></tr>' in html
    assert re.search(r'<strong id="pending-count">2</strong>', html)


def test_it_reports_bulk_results_as_messages_without_javascript(lead_client, propose):
    low = propose()
    response = lead_client.post("/queue/bulk-approve/", {"action": [low.pk]}, follow=True)
    assert f"{low.action_type.slug} by Refund Bot: Approved." in response.content.decode()


# ---------------------------------------------------------------- shadow lane


def test_it_lists_shadowed_actions_in_their_own_lane(lead_client, propose):
    shadowed = propose(tier=Tier.OBSERVER)
    pending = propose()

    shadow_html = lead_client.get("/queue/?lane=shadow").content.decode()
    pending_html = lead_client.get("/queue/").content.decode()

    assert row_ids(shadow_html) == [str(shadowed.pk)]
    assert "Would approve" in shadow_html and "Would reject" in shadow_html
    assert row_ids(pending_html) == [str(pending.pk)]
    assert 'Shadow lane <span class="count">1</span>' in pending_html


def test_it_records_one_shadow_mark_per_lead_and_shows_it(lead_client, lead, propose):
    shadowed = propose(tier=Tier.OBSERVER)
    url = f"/actions/{shadowed.pk}/shadow-mark/"

    html = lead_client.post(url, {"lane": "shadow", "mark": "reject"}, **HTMX).content.decode()

    assert row_ids(html) == [str(shadowed.pk)]
    assert "You: would reject" in html
    assert Decision.objects.get(action=shadowed, user=lead).verdict == DecisionVerdict.WOULD_REJECT
    again = lead_client.post(url, {"lane": "shadow", "mark": "approve"}, **HTMX).content.decode()
    assert "You have already decided on this payload" in again
    assert Decision.objects.filter(action=shadowed).count() == 1
    assert Action.objects.get(pk=shadowed.pk).status == Status.SHADOWED
    assert "You: would reject" in lead_client.get("/queue/?lane=shadow").content.decode()


# ---------------------------------------------------------------- undo-window veto


def test_it_lists_auto_approved_actions_inside_their_undo_window(lead_client, auto_approved):
    html = lead_client.get("/queue/").content.decode()
    section = html.split('id="veto-rows"')[1].split("</tbody>")[0]
    assert row_ids(section) == [str(auto_approved.pk)]
    assert "Veto" in section


def test_it_leaves_out_auto_approved_actions_past_their_undo_window(lead_client, auto_approved):
    set_fields(auto_approved, dispatch_after=timezone.now() - timedelta(seconds=1))
    assert row_ids(lead_client.get("/queue/").content.decode()) == []


def test_it_vetoes_an_auto_approved_action_with_a_reason(lead_client, lead, auto_approved):
    url = f"/actions/{auto_approved.pk}/veto/"

    refused = lead_client.post(url, {"lane": "pending", "reason": ""}, **HTMX).content.decode()
    assert "Say why" in refused and row_ids(refused) == [str(auto_approved.pk)]

    html = lead_client.post(url, {"lane": "pending", "reason": "Wrong lead."}, **HTMX).content.decode()

    auto_approved.refresh_from_db()
    assert auto_approved.status == Status.REJECTED
    assert auto_approved.decisions.get().verdict == DecisionVerdict.VETO
    assert row_ids(html) == [] and "it will not be dispatched" in html


def test_it_refuses_a_veto_once_the_window_closed(lead_client, auto_approved):
    set_fields(auto_approved, dispatch_after=timezone.now() - timedelta(seconds=1))
    html = lead_client.post(
        f"/actions/{auto_approved.pk}/veto/", {"lane": "pending", "reason": "Late."}, **HTMX
    ).content.decode()
    assert "The undo window of this action has closed." in html
    assert Action.objects.get(pk=auto_approved.pk).status == Status.APPROVED


# ---------------------------------------------------------------- notification settings


def test_it_lets_a_lead_choose_how_they_hear_of_new_items(lead_client, lead):
    html = lead_client.get("/settings/").content.decode()
    assert 'value="immediate" checked' in html  # the default, never chosen

    response = lead_client.post("/settings/", {"mode": "hourly"}, follow=True)

    assert "Notification preference saved." in response.content.decode()
    assert NotificationPreference.objects.get(user=lead).mode == NotificationMode.HOURLY
    assert 'value="hourly" checked' in response.content.decode()


def test_it_refuses_an_unknown_notification_mode(lead_client, lead):
    response = lead_client.post("/settings/", {"mode": "carrier-pigeon"}, follow=True)
    assert "Choose one of the notification options." in response.content.decode()
    assert not NotificationPreference.objects.filter(user=lead).exists()
