"""The department dashboard's decision analytics: a lead sees the approvers
of the departments they lead, with their numbers and signals; another
department's approvers stay out of it (approvals.reach decides the page)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.demo.history import clock
from approvals.models import Risk
from tests.support.factories import AgentFactory, DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_lead_sees_their_approvers_and_the_flags_not_another_departments(propose, lead, department):
    start = timezone.now() - timedelta(hours=5)
    with clock(start):
        action = propose(Tier.CONTRIBUTOR, Risk.LOW, payload={"note": "z" * 300})
    with clock(start + timedelta(seconds=2)):  # 14 s of reading, approved in 2
        services.approve(action.pk, lead)
    sven = UserFactory(username="sven", first_name="Sven", last_name="Strand")
    support = DepartmentFactory(name="Support", slug="support", leads=[sven])
    helper = AgentFactory(slug="helper", department=support)
    other = services.propose(helper, action.action_type, payload={"note": "hi"}, reasoning="r")[0]
    # No grant for the helper: blocked, nobody decides. Sven decides nothing of Finance.
    assert other.department == support

    page = logged_in(lead).get("/departments/finance/").content.decode()
    assert 'id="decision-analytics"' in page
    assert (lead.get_full_name() or lead.username) in page
    assert "1 approvals faster than their preview can be read" in page
    assert "Sven Strand" not in page
    assert logged_in(lead).get("/departments/support/").status_code == 404


def test_it_says_so_when_nobody_decided(lead, department):
    page = logged_in(lead).get("/departments/finance/").content.decode()
    assert "Nobody decided on this department's actions in the last 30 days." in page
