"""/agents/ and /agents/<slug>/: who sees which agents, and what an agent's
page tells about it (grants and limits, recent actions, the kill switch)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from agents.models import AgentStatus, Tier
from approvals import services
from tests.support.factories import (
    ActionTypeFactory,
    AdminFactory,
    AgentFactory,
    DepartmentFactory,
    GrantFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def elsewhere(db):
    """An agent of another department, with its own lead."""
    stranger = UserFactory(username="sven-support")
    support = DepartmentFactory(name="Support", slug="support", leads=[stranger])
    return AgentFactory(slug="triage-bot", name="Triage Bot", department=support)


@pytest.fixture
def refunds(agent):
    action_type = ActionTypeFactory(slug="payments.refund", name="Refund a payment", risk="medium")
    return GrantFactory(
        agent=agent,
        action_type=action_type,
        tier=Tier.EXECUTOR,
        max_amount_per_action=Decimal("5000.00"),
        max_actions_per_day=40,
        max_amount_per_day=Decimal("20000.00"),
        auto_approve_max_amount=Decimal("250.00"),
        min_confidence=Decimal("0.900"),
    )


# ---------------------------------------------------------------- the list


def test_it_lists_the_agents_of_the_departments_the_lead_leads(lead, agent, refunds, elsewhere):
    response = logged_in(lead).get("/agents/")
    assert response.status_code == 200
    assert list(response.context["agents"]) == [agent]
    row = response.context["agents"][0]
    assert row.grant_count == 1
    html = response.content.decode()
    for shown in ("Refund Bot", "/agents/refund-bot/", "Finance", "olga-owner", "Active", "1.0"):
        assert shown in html
    assert "Triage Bot" not in html


def test_it_lists_every_agent_for_an_admin(agent, elsewhere):
    admin = AdminFactory(username="ada-admin")
    assert set(logged_in(admin).get("/agents/").context["agents"]) == {agent, elsewhere}


def test_it_lists_the_agents_someone_owns_even_outside_their_departments(owner, agent, elsewhere):
    assert list(logged_in(owner).get("/agents/").context["agents"]) == [agent]


def test_it_says_so_when_there_is_no_agent_to_show(db):
    response = logged_in(UserFactory()).get("/agents/")
    assert "No agents in the departments you lead." in response.content.decode()


def test_it_sends_strangers_to_the_login_page(client, agent):
    for url in ("/agents/", "/agents/refund-bot/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


# ---------------------------------------------------------------- one agent


def test_it_shows_the_agent_with_each_grant_its_tier_and_limits(lead, agent, refunds):
    response = logged_in(lead).get("/agents/refund-bot/")
    assert response.status_code == 200
    html = response.content.decode()
    for shown in ("Does things for tests.", "olga-owner", "Finance", "1.0"):
        assert shown in html
    for shown in ("payments.refund", "Medium", "Executor", "5,000.00", "40", "20,000.00", "250.00", "0.90"):
        assert shown in html


def test_it_links_the_agents_reviews_with_the_next_review_date(lead, agent):
    agent.next_review_on = date(2026, 12, 21)
    agent.save(update_fields=["next_review_on"])
    html = logged_in(lead).get("/agents/refund-bot/").content.decode()
    assert '<a href="/agents/refund-bot/reviews/">Reviews</a> · next review 21 Dec 2026' in html


def test_it_says_no_limit_where_a_grant_has_none(lead, agent):
    GrantFactory(agent=agent, action_type=ActionTypeFactory(slug="email.send"), tier=Tier.CONTRIBUTOR)
    html = logged_in(lead).get("/agents/refund-bot/").content.decode()
    assert html.count("no limit") == 3  # per action, per day, amount a day; auto-approval only for executors


def test_it_lists_the_last_twenty_actions_linked_to_their_pages(lead, propose):
    actions = [propose() for _ in range(21)]
    response = logged_in(lead).get("/agents/refund-bot/")
    shown = list(response.context["recent_actions"])
    assert shown == sorted(actions, key=lambda a: a.created_at, reverse=True)[:20]
    html = response.content.decode()
    assert f'href="/actions/{actions[-1].pk}/"' in html
    assert str(actions[0].pk) not in html


def test_it_links_each_listed_action_to_a_page_the_viewer_may_open(owner, propose):
    action = propose()
    client = logged_in(owner)
    html = client.get("/agents/refund-bot/").content.decode()
    assert f'href="/actions/{action.pk}/"' in html  # the owner sees their agent's actions, read only
    assert client.get(f"/actions/{action.pk}/").status_code == 200


def test_it_shows_the_status_of_each_recent_action(lead, other_lead, propose):
    rejected = propose()
    services.reject(rejected.pk, other_lead, reason="No.")
    html = logged_in(lead).get("/agents/refund-bot/").content.decode()
    assert 'class="badge status-rejected">Rejected' in html


def test_it_hides_an_agent_of_another_department_from_a_lead(lead, elsewhere):
    assert logged_in(lead).get("/agents/triage-bot/").status_code == 404


def test_it_answers_404_for_an_unknown_agent(lead):
    assert logged_in(lead).get("/agents/nobody/").status_code == 404


def test_it_shows_the_owner_their_agent_without_the_switch(owner, agent):
    response = logged_in(owner).get("/agents/refund-bot/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Only the leads of Finance or an admin may suspend or resume Refund Bot." in html
    assert "/agents/refund-bot/suspend/" not in html


def test_it_offers_the_switch_to_a_lead_and_to_an_admin(lead, agent):
    admin = AdminFactory(username="ada-admin")
    for user in (lead, admin):
        html = logged_in(user).get("/agents/refund-bot/").content.decode()
        assert 'action="/agents/refund-bot/suspend/"' in html
        assert "Suspend Refund Bot" in html


def test_it_offers_no_switch_for_a_retired_agent(lead, agent):
    agent.status = AgentStatus.RETIRED
    agent.save()
    html = logged_in(lead).get("/agents/refund-bot/").content.decode()
    assert "A retired agent stays retired" in html
    assert "/suspend/" not in html and "/resume/" not in html


def test_the_action_page_links_to_the_agent_page(lead, propose):
    action = propose()
    html = logged_in(lead).get(f"/actions/{action.pk}/").content.decode()
    assert 'href="/agents/refund-bot/"' in html
