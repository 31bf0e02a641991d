"""The kill switch on /agents/<slug>/: one click suspends, resuming needs a
reason, only the department's leads and admins may flip it, each flip is
audited, and a suspended agent's next proposal is refused at once."""

from __future__ import annotations

import pytest
from django.test import Client

from agents.models import Agent, AgentStatus
from agents.services import suspend_agent
from audit.log import Actor
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client, assert_error, post_json
from tests.api.test_api_proposals import granted, refund
from tests.support.factories import AdminFactory, AgentFactory, DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db

SUSPEND = "/agents/refund-bot/suspend/"
RESUME = "/agents/refund-bot/resume/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def logged_in(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def status_of(agent: Agent) -> str:
    agent.refresh_from_db()
    return agent.status


def status_events(agent: Agent) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(agent_id=agent.pk, verb__startswith="agent.").order_by("id"))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def admin(db):
    return AdminFactory(username="ada-admin")


@pytest.fixture
def suspended(agent, lead):
    suspend_agent(agent, actor=Actor.user(lead), reason="Refunds look wrong.")
    return agent


# ---------------------------------------------------------------- suspending


def test_a_lead_suspends_the_agent_in_one_click_with_a_default_reason(lead, agent):
    response = logged_in(lead).post(SUSPEND, follow=True)
    assert response.redirect_chain == [("/agents/refund-bot/", 302)]
    assert status_of(agent) == AgentStatus.SUSPENDED
    [event] = status_events(agent)
    assert (event.verb, event.actor_label) == ("agent.suspended", "lena-lead")
    assert (event.before, event.after) == (
        {"status": "active"},
        {"status": "suspended", "reason": "Stopped from the agent page by lena-lead"},
    )
    assert messages_of(response) == [
        "Refund Bot is suspended: its new proposals are refused and none of its actions is dispatched."
    ]
    html = response.content.decode()
    assert "Suspended</strong> by lena-lead at" in html
    assert "Stopped from the agent page by lena-lead" in html


def test_a_lead_may_give_a_reason_for_the_suspension(lead, agent):
    logged_in(lead).post(SUSPEND, {"reason": "  Refunding the wrong orders.  "})
    assert status_events(agent)[0].after["reason"] == "Refunding the wrong orders."


def test_an_admin_outside_the_department_suspends_too(admin, agent):
    logged_in(admin).post(SUSPEND)
    assert status_of(agent) == AgentStatus.SUSPENDED
    assert status_events(agent)[0].actor_label == "ada-admin"


def test_a_superuser_suspends_too(agent):
    root = UserFactory(username="root", is_superuser=True)
    logged_in(root).post(SUSPEND)
    assert status_of(agent) == AgentStatus.SUSPENDED


def test_the_owner_may_not_flip_the_switch(owner, agent, suspended):
    client = logged_in(owner)
    assert client.post(SUSPEND).status_code == 403
    assert client.post(RESUME, {"reason": "I fixed it."}).status_code == 403
    assert status_of(agent) == AgentStatus.SUSPENDED
    assert len(status_events(agent)) == 1


def test_a_lead_of_another_department_cannot_even_find_the_agent(agent):
    stranger = UserFactory(username="sven-support")
    DepartmentFactory(name="Support", slug="support", leads=[stranger])
    client = logged_in(stranger)
    assert client.post(SUSPEND).status_code == 404
    assert client.post(RESUME, {"reason": "Why not."}).status_code == 404
    assert status_of(agent) == AgentStatus.ACTIVE


def test_it_sends_strangers_to_the_login_page(client, agent):
    response = client.post(SUSPEND)
    assert (response.status_code, response["Location"].startswith("/login/")) == (302, True)
    assert status_of(agent) == AgentStatus.ACTIVE


def test_the_switch_only_answers_posts(lead, agent):
    assert logged_in(lead).get(SUSPEND).status_code == 405
    assert status_of(agent) == AgentStatus.ACTIVE


def test_suspending_twice_records_it_once(lead, agent, suspended):
    response = logged_in(lead).post(SUSPEND, follow=True)
    assert messages_of(response) == ["Refund Bot is already suspended."]
    assert len(status_events(agent)) == 1


def test_a_retired_agent_cannot_be_suspended_or_resumed(lead, agent):
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.RETIRED)
    client = logged_in(lead)
    response = client.post(SUSPEND, follow=True)
    assert messages_of(response) == ["A retired agent stays retired; register a new agent instead."]
    response = client.post(RESUME, {"reason": "Back."}, follow=True)
    assert messages_of(response) == ["A retired agent stays retired; register a new agent instead."]
    assert status_of(agent) == AgentStatus.RETIRED
    assert status_events(agent) == []


def test_it_answers_htmx_with_the_switch_the_banner_and_the_flash(lead, agent):
    response = logged_in(lead).post(SUSPEND, **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="kill-switch"')
    assert 'action="/agents/refund-bot/resume/"' in html  # the switch now resumes
    assert '<div id="agent-status" class="status-banner suspended" role="status" hx-swap-oob="true">' in html
    assert '<div id="flash" class="flash" role="status" aria-live="polite" hx-swap-oob="true">' in html
    assert "Refund Bot is suspended" in html
    assert '<section id="status-history" hx-swap-oob="true">' in html


# ---------------------------------------------------------------- resuming


def test_resuming_needs_a_reason(lead, agent, suspended):
    response = logged_in(lead).post(RESUME, {"reason": "   "}, follow=True)
    assert messages_of(response) == ["Say why it is safe to resume Refund Bot."]
    assert status_of(agent) == AgentStatus.SUSPENDED
    assert len(status_events(agent)) == 1


def test_resuming_with_htmx_and_no_reason_shows_the_error_and_keeps_the_form(lead, agent, suspended):
    html = logged_in(lead).post(RESUME, {"reason": ""}, **HTMX).content.decode()
    assert "Say why it is safe to resume Refund Bot." in html
    assert 'action="/agents/refund-bot/resume/"' in html


def test_a_lead_resumes_with_a_reason_and_it_is_audited(other_lead, agent, suspended):
    response = logged_in(other_lead).post(RESUME, {"reason": "Fixed in 1.1."}, follow=True)
    assert messages_of(response) == ["Refund Bot is active again: the policy evaluates its proposals."]
    assert status_of(agent) == AgentStatus.ACTIVE
    resumed = status_events(agent)[-1]
    assert (resumed.verb, resumed.actor_label, resumed.after) == (
        "agent.resumed",
        "omar-lead",
        {"status": "active", "reason": "Fixed in 1.1."},
    )
    html = response.content.decode()
    assert "resumed by omar-lead" in html and "Fixed in 1.1." in html


def test_resuming_an_active_agent_changes_nothing(lead, agent):
    response = logged_in(lead).post(RESUME, {"reason": "Just in case."}, follow=True)
    assert messages_of(response) == ["Refund Bot is already active."]
    assert status_events(agent) == []


def test_the_page_lists_the_status_changes(lead, agent, suspended):
    html = logged_in(lead).get("/agents/refund-bot/").content.decode()
    assert "active → suspended" in html and "Refunds look wrong." in html


# ---------------------------------------------------------------- CSRF


def test_the_switch_refuses_a_post_without_the_csrf_token(lead, agent):
    client = logged_in(lead, enforce_csrf_checks=True)
    assert client.post(SUSPEND).status_code == 403
    assert status_of(agent) == AgentStatus.ACTIVE


def test_the_switch_accepts_the_token_of_the_page(lead, agent):
    client = logged_in(lead, enforce_csrf_checks=True)
    client.get("/agents/refund-bot/")
    token = client.cookies["csrftoken"].value
    assert client.post(SUSPEND, {"csrfmiddlewaretoken": token}).status_code == 302
    assert status_of(agent) == AgentStatus.SUSPENDED


def test_the_htmx_switch_sends_the_token_in_a_header(lead, agent):
    client = logged_in(lead, enforce_csrf_checks=True)
    html = client.get("/agents/refund-bot/").content.decode()
    token = client.cookies["csrftoken"].value
    assert 'hx-headers=\'{"X-CSRFToken": "' in html  # what htmx sends with every request
    assert client.post(SUSPEND, HTTP_X_CSRFTOKEN=token, **HTMX).status_code == 200
    assert status_of(agent) == AgentStatus.SUSPENDED


# ---------------------------------------------------------------- effect on the agent API


def test_the_next_proposal_after_the_click_is_refused(lead, agent):
    granted(agent)
    agent_api = api_client(agent)
    assert post_json(agent_api, "/api/v1/actions/", refund()).status_code == 201

    logged_in(lead).post(SUSPEND)

    response = post_json(agent_api, "/api/v1/actions/", refund(payload={"order": "A-1002", "amount": 10}, amount=...))
    assert "suspended" in assert_error(response, 403, "agent_suspended")["message"]


def test_proposals_are_accepted_again_once_resumed(lead, agent, suspended):
    granted(agent)
    agent_api = api_client(agent)
    assert_error(post_json(agent_api, "/api/v1/actions/", refund()), 403, "agent_suspended")
    logged_in(lead).post(RESUME, {"reason": "Fixed in 1.1."})
    response = post_json(agent_api, "/api/v1/actions/", refund(payload={"order": "A-1002", "amount": 10}, amount=...))
    assert response.status_code == 201


def test_suspending_one_agent_leaves_the_others_alone(lead, agent, department):
    colleague = AgentFactory(slug="invoice-bot", department=department)
    logged_in(lead).post(SUSPEND)
    assert status_of(colleague) == AgentStatus.ACTIVE
