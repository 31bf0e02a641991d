"""/actions/<id>/: everything a lead needs to decide, and each way a
decision can go (or be refused), with and without htmx."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.models import Action, Decision, DecisionVerdict, PromotionPolicy, Risk
from approvals.rules.lifecycle import Status
from tests.support.factories import DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def lead_client(client: Client, lead, department) -> Client:
    client.force_login(lead)
    return client


@pytest.fixture
def other_client(other_lead, department) -> Client:
    client = Client()
    client.force_login(other_lead)
    return client


@pytest.fixture
def action(propose) -> Action:
    return propose(
        payload={"note": "refund order 1187", "count": 2},
        reasoning="The customer was charged twice for order 1187.",
        amount=Decimal("1250.00"),
        context={"ticket": "SUP-4411", "data_classification": "internal"},
    )


def page(client: Client, action: Action) -> str:
    response = client.get(f"/actions/{action.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def messages_on(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


# ---------------------------------------------------------------- reading


def test_it_shows_what_the_lead_needs_to_decide(lead_client, lead, other_lead, action, propose):
    earlier = propose()
    services.reject(earlier.pk, other_lead, reason="Not now.")
    same_type_approved = propose()
    services.approve(same_type_approved.pk, other_lead)

    html = page(lead_client, action)

    assert "&quot;note&quot;: &quot;refund order 1187&quot;,\n  &quot;count&quot;: 2" in html  # pretty JSON
    assert "The customer was charged twice for order 1187." in html
    assert "&quot;ticket&quot;: &quot;SUP-4411&quot;" in html
    assert action.verdict_reason in html
    assert "1,250.00" in html
    # The agent's recent history, and its record: one of the two decisions
    # on its proposals was an approval (each propose() is a new type, so the
    # rate for this action's own type has no decisions yet).
    assert str(earlier.pk) in html and str(same_type_approved.pk) in html
    assert "No human decisions on its" in html
    assert "action.proposed" in html  # the audit trail
    assert 'name="payload"' in html and 'name="reason"' in html


def test_it_shows_the_approval_rate_for_this_action_type(lead_client, other_lead, agent, action):
    for verdict in ("approve", "approve", "approve", "reject"):
        sibling, _ = services.propose(agent, action.action_type, payload={"amount": 10}, reasoning="Again.")
        if verdict == "approve":
            services.approve(sibling.pk, other_lead)
        else:
            services.reject(sibling.pk, other_lead, reason="No.")
    # The window is the department's promotion policy's, as on every page and in the API.
    PromotionPolicy.objects.update_or_create(department=None, defaults={"window_days": 30})

    html = page(lead_client, action)

    assert "<strong>75 %</strong>" in html
    assert "(3 of 4 decisions in the last 30 days;" in html


def test_it_answers_404_outside_the_users_departments(client, action):
    stranger = UserFactory(username="lars-lead")
    DepartmentFactory(name="Legal", slug="legal", leads=[stranger])
    client.force_login(stranger)

    assert client.get(f"/actions/{action.pk}/").status_code == 404
    assert client.post(f"/actions/{action.pk}/approve/").status_code == 404
    assert client.post(f"/actions/{action.pk}/reject/", {"reason": "x"}).status_code == 404
    assert Action.objects.get(pk=action.pk).status == Status.PENDING


# ---------------------------------------------------------------- deciding


def test_it_approves_and_says_so(lead_client, action):
    response = lead_client.post(f"/actions/{action.pk}/approve/", {"comment": "Checked the ledger."}, follow=True)

    action.refresh_from_db()
    assert action.status == Status.APPROVED
    assert action.decisions.get().comment == "Checked the ledger."
    assert f"Approved {action.action_type.slug}." in messages_on(response)
    assert "Approved by lena-lead at" in response.content.decode()


def test_it_edits_and_approves_keeping_both_payloads(lead_client, action):
    edited = {"note": "refund order 1187, once", "count": 1, "amount": 625.0}

    response = lead_client.post(f"/actions/{action.pk}/approve/", {"payload": json.dumps(edited)}, follow=True)

    action.refresh_from_db()
    assert action.status == Status.APPROVED
    assert action.payload == {"note": "refund order 1187", "count": 2, "amount": 1250.0}
    assert action.amount == Decimal("625.00")  # read from the edit
    assert action.approved_payload == edited
    assert action.decisions.get().verdict == DecisionVerdict.EDIT_APPROVE
    html = response.content.decode()
    assert "Proposed by the agent" in html and "Approved (edited by a lead)" in html
    assert "refund order 1187, once" in html


def test_it_keeps_the_action_pending_and_the_text_when_the_json_is_invalid(lead_client, action):
    text = '{"note": "refund", count: 1}'

    response = lead_client.post(f"/actions/{action.pk}/approve/", {"payload": text})

    assert response.status_code == 422
    html = response.content.decode()
    errors = html.split('id="payload-errors"')[1].split("</ul>")[0]
    assert "Not valid JSON: Expecting property name enclosed in double quotes (line 1, column 20)." in errors
    assert "{&quot;note&quot;: &quot;refund&quot;, count: 1}</textarea>" in html
    assert Action.objects.get(pk=action.pk).status == Status.PENDING
    assert not Decision.objects.exists()


def test_it_shows_schema_errors_next_to_the_payload(lead_client, action):
    response = lead_client.post(f"/actions/{action.pk}/approve/", {"payload": '{"count": -1, "extra": true}'}, **HTMX)

    html = response.content.decode()
    errors = html.split('id="payload-errors"')[1].split("</ul>")[0]
    assert "count: -1 is less than the minimum of 0" in errors
    assert "Additional properties are not allowed (&#x27;extra&#x27; was unexpected)" in errors
    assert 'id="decision-panel"' in html and "<html" not in html
    assert Action.objects.get(pk=action.pk).status == Status.PENDING


def test_it_treats_an_unchanged_payload_as_a_plain_approval(lead_client, action):
    lead_client.post(f"/actions/{action.pk}/approve/", {"payload": json.dumps(action.payload, indent=2)})
    action.refresh_from_db()
    assert action.status == Status.APPROVED and action.approved_payload is None
    assert action.decisions.get().verdict == DecisionVerdict.APPROVE


def test_it_rejects_only_with_a_reason_which_goes_back_to_the_agent(lead_client, action):
    refused = lead_client.post(f"/actions/{action.pk}/reject/", {"reason": "  "}, follow=True)
    assert "Say why you reject it" in messages_on(refused)
    assert Action.objects.get(pk=action.pk).status == Status.PENDING

    lead_client.post(f"/actions/{action.pk}/reject/", {"reason": "Already refunded on 3 May."})

    action.refresh_from_db()
    assert action.status == Status.REJECTED
    assert action.decisions.get().comment == "Already refunded on 3 May."


def test_it_answers_htmx_with_the_decision_panel(lead_client, action):
    html = lead_client.post(f"/actions/{action.pk}/reject/", {"reason": "Duplicate."}, **HTMX).content.decode()

    assert html.lstrip().startswith('<section id="decision-panel"')
    assert 'id="flash" class="flash" role="status" aria-live="polite" hx-swap-oob="true"' in html
    assert 'id="audit-events" hx-swap-oob="true"' in html and "action.rejected" in html
    assert "Rejected by lena-lead" in html


# ---------------------------------------------------------------- refusals, in the lead's words


def test_it_shows_an_owner_who_leads_the_department_her_agents_action_read_only(client, owner, department, action):
    department.leads.add(owner)
    client.force_login(owner)

    html = page(client, action)
    assert "You own Refund Bot: you see its actions, and the leads of Finance decide them." in html
    assert 'name="payload"' not in html and 'name="reason"' not in html

    response = client.post(f"/actions/{action.pk}/approve/", follow=True)
    assert "You own this agent, so you may not approve its actions." in messages_on(response)
    response = client.post(f"/actions/{action.pk}/reject/", {"reason": "Mine, so no."}, follow=True)
    assert "You own this agent, so you may not decide its actions." in messages_on(response)
    assert Action.objects.get(pk=action.pk).status == Status.PENDING


def test_it_tells_the_second_lead_who_decided_first(lead_client, other_client, action):
    stale = page(other_client, action)  # omar opens it while it waits
    assert 'name="reason"' in stale

    lead_client.post(f"/actions/{action.pk}/approve/")
    response = other_client.post(f"/actions/{action.pk}/reject/", {"reason": "Too late?"}, follow=True)

    assert re.search(r"Already decided: Approved by lena-lead at [\d-]+ [\d:]+\.", messages_on(response))
    assert "Approved by lena-lead at" in response.content.decode()
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED
    assert Decision.objects.filter(action=action).count() == 1


def test_it_waits_for_a_second_lead_on_a_critical_action(lead_client, other_client, propose):
    critical = propose(risk=Risk.CRITICAL)

    first = lead_client.post(f"/actions/{critical.pk}/approve/", follow=True)
    assert "Your approval is recorded. This critical action waits for a second approval" in messages_on(first)
    assert "You approved. This critical action waits for a second approval from another lead." in (
        first.content.decode()
    )
    assert Action.objects.get(pk=critical.pk).status == Status.PENDING

    assert "lena-lead approved; this critical action needs your second approval." in page(other_client, critical)
    other_client.post(f"/actions/{critical.pk}/approve/")
    assert Action.objects.get(pk=critical.pk).status == Status.APPROVED


def test_it_refuses_the_same_lead_twice_on_a_critical_action(lead_client, propose):
    critical = propose(risk=Risk.CRITICAL)
    lead_client.post(f"/actions/{critical.pk}/approve/")

    response = lead_client.post(f"/actions/{critical.pk}/approve/", follow=True)

    assert "You have already decided on this payload; another lead must give the second approval." in (
        messages_on(response)
    )
    assert Action.objects.get(pk=critical.pk).status == Status.PENDING


def test_it_lets_a_backup_approver_decide_only_after_escalation(client, department, action):
    backup = UserFactory(username="bea-backup")
    department.backup_approvers.add(backup)
    Action.objects.filter(pk=action.pk).update(sla_deadline=timezone.now() + timedelta(hours=1))
    client.force_login(backup)

    html = page(client, action)
    assert "You are a backup approver for Finance: you may decide once this action escalates" in html
    assert 'name="reason"' not in html
    response = client.post(f"/actions/{action.pk}/approve/", follow=True)
    assert "Only the leads of this action" in messages_on(response)
    assert Action.objects.get(pk=action.pk).status == Status.PENDING

    Action.objects.filter(pk=action.pk).update(escalated_at=timezone.now())
    client.post(f"/actions/{action.pk}/approve/")
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED


def test_it_offers_would_approve_on_a_shadowed_action(lead_client, lead, propose):
    shadowed = propose(tier=Tier.OBSERVER)

    assert "Would approve" in page(lead_client, shadowed)
    lead_client.post(f"/actions/{shadowed.pk}/shadow-mark/", {"mark": "approve"})

    assert Decision.objects.get(action=shadowed, user=lead).verdict == DecisionVerdict.WOULD_APPROVE
    html = page(lead_client, shadowed)
    assert "lena-lead</strong> would approve (shadow)" in html
    assert 'name="mark"' not in html
