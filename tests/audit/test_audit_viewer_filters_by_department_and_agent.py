"""The audit viewer's department list and agent filter come from the directory
approvals provides (audit.access.Directory): a lead is offered only their own
departments, an admin all of them; an agent is found by its slug."""

from __future__ import annotations

import re

import pytest

from audit.log import Actor, record
from tests.support.factories import AgentFactory, DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_departments(department):
    sales = DepartmentFactory(name="Sales", slug="sales", leads=[UserFactory(username="sara-sales")])
    return department, sales


def offered(page: str) -> list[str]:
    select = re.search(r'<select name="department">(.*?)</select>', page, re.S)
    assert select is not None
    return re.findall(r"<option value=\"\d+\"[^>]*>([^<]+)</option>", select.group(1))


def test_a_lead_is_offered_only_their_departments_and_an_admin_all(client, lead, two_departments):
    client.force_login(lead)
    assert offered(client.get("/audit/").content.decode()) == ["Finance"]

    client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
    assert offered(client.get("/audit/").content.decode()) == ["Finance", "Sales"]


def test_the_agent_filter_finds_the_agent_by_its_slug(client, lead, department, agent):
    other = AgentFactory(slug="other-bot", owner=agent.owner, department=department)
    record("test.refund_bot_thing", agent, actor=Actor.system(), department_id=department.pk, agent_id=agent.pk)
    record("test.other_bot_thing", other, actor=Actor.system(), department_id=department.pk, agent_id=other.pk)
    client.force_login(lead)

    page = client.get("/audit/", {"agent": "refund-bot"}).content.decode()
    assert "test.refund_bot_thing" in page and "test.other_bot_thing" not in page

    page = client.get("/audit/", {"agent": "no-such-bot"}).content.decode()
    assert "test.refund_bot_thing" not in page and "test.other_bot_thing" not in page
