"""The department dashboard: pending now, median time to decision,
approvals and rejections per day, agents near a tier change; for the
department's leads and admins only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.support.factories import (
    ActionTypeFactory,
    AdminFactory,
    AgentFactory,
    DepartmentFactory,
    GrantFactory,
    UserFactory,
)
from tests.support.trust_records import actions, approvals, rejections

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def refunds(agent):
    return GrantFactory(
        agent=agent,
        action_type=ActionTypeFactory(slug="payments.refund"),
        tier_changed_at=timezone.now() - timedelta(days=30),
        tier_agent_version="1.0",
    )


@pytest.fixture
def support(db):
    return DepartmentFactory(name="Support", slug="support", leads=[UserFactory(username="sven-support")])


def test_it_shows_what_waits_how_fast_it_is_decided_and_the_days(lead, refunds, support):
    actions(refunds, 3, status="pending")
    approvals(refunds, 4, decided_after=timedelta(minutes=10), created_at=timezone.now() - timedelta(days=1))
    rejections(refunds, 1, decided_after=timedelta(minutes=30), created_at=timezone.now() - timedelta(days=1))
    other = GrantFactory(agent=AgentFactory(slug="triage-bot", department=support))
    actions(other, 7, status="pending")  # another department's queue

    response = logged_in(lead).get("/departments/finance/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<dd id="pending-now"><a href="/queue/">3</a></dd>' in html
    assert "10 min" in html  # the median of 10, 10, 10, 10, 30 minutes
    assert "<strong>80.0 %</strong>" in html
    chart = html[html.index('id="department-chart"') :]
    assert chart.count('<rect class="bar-approved"') == 1 and chart.count('<rect class="bar-against"') == 1
    assert "4 approved, 1 rejected, vetoed or rolled back" in chart


def test_it_lists_the_agents_near_a_tier_change(lead, refunds):
    approvals(refunds, 47)  # 3 decisions short of a promotion
    html = logged_in(lead).get("/departments/finance/").content.decode()
    near = html[html.index('id="near-a-change"') :]
    assert "Refund Bot" in near and "Promotion after 3 more decisions" in near


def test_it_says_so_when_no_agent_is_near_a_change(lead, refunds):
    html = logged_in(lead).get("/departments/finance/").content.decode()
    assert "No agent of Finance is near a tier change." in html


def test_a_lead_of_one_department_is_taken_straight_to_it(lead, department):
    response = logged_in(lead).get("/dashboard/")
    assert response.status_code == 302 and response["Location"] == "/departments/finance/"


def test_an_admin_picks_among_all_departments(department, support):
    admin = AdminFactory(username="ada-admin")
    html = logged_in(admin).get("/dashboard/").content.decode()
    assert "/departments/finance/" in html and "/departments/support/" in html
    assert logged_in(admin).get("/departments/support/").status_code == 200


def test_a_lead_cannot_see_another_departments_dashboard(lead, department, support):
    assert logged_in(lead).get("/departments/support/").status_code == 404


def test_an_owner_who_leads_nothing_sees_no_dashboard(owner, department):
    assert logged_in(owner).get("/departments/finance/").status_code == 404
    assert "You lead no department." in logged_in(owner).get("/dashboard/").content.decode()


def test_the_nav_links_the_dashboard(lead, department):
    assert '<a href="/dashboard/">Dashboard</a>' in logged_in(lead).get("/queue/").content.decode()
