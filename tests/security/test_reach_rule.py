"""The reach rule itself (approvals.reach, docs/access.md): each per-object
predicate agrees with the query a list uses, the cases the issue found
leaking are closed, and the imports keep flowing one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from agents.models import Agent, AgentStatus, Tier
from agents.services import suspend_agent
from approvals import services
from approvals.models import Action, Alert, Department
from approvals.reach import reach_of
from audit.log import Actor
from tests.support.factories import (
    ActionTypeFactory,
    AdminFactory,
    AgentFactory,
    DepartmentFactory,
    GrantFactory,
    UserFactory,
)
from tests.support.reach_world import ROLES, build

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# ---------------------------------------------------------------- one definition per rule


@pytest.mark.parametrize("role", ROLES)
def test_each_predicate_agrees_with_the_query_its_lists_use(role):
    world = build(role)
    reach = reach_of(world.user or AnonymousUser())
    for action in Action.objects.select_related("agent"):
        assert reach.sees_action(action) == reach.actions_seen().filter(pk=action.pk).exists(), action
        assert reach.queues(action) == Action.objects.filter(reach.queue_q(), pk=action.pk).exists(), action
        assert reach.decides(action) == Action.objects.filter(reach.decides_q(), pk=action.pk).exists(), action
    for agent in Agent.objects.all():
        assert reach.sees_agent(agent) == reach.agents_seen().filter(pk=agent.pk).exists()
    for department in Department.objects.all():
        assert reach.sees_department(department) == reach.departments_seen().filter(pk=department.pk).exists()
    for alert in Alert.objects.select_related("agent"):
        assert reach.sees_alert(alert) == reach.alerts_seen().filter(pk=alert.pk).exists()


# ---------------------------------------------------------------- what leaked before


def test_a_lead_opens_the_page_of_another_departments_agent_whose_actions_she_decides():
    lead, backup = UserFactory(username="fiona-finance"), UserFactory(username="bea-backup")
    finance = DepartmentFactory(slug="finance", leads=[lead], backup_approvers=[backup])
    support_agent = AgentFactory(slug="support-bot", department=DepartmentFactory(slug="support"))
    refund = ActionTypeFactory(slug="payments.refund", routing_department=finance)
    GrantFactory(agent=support_agent, action_type=refund, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(support_agent, refund, payload={"note": "R-1"}, reasoning="Asked.")
    assert action.department == finance

    page = logged_in(lead).get(f"/actions/{action.pk}/").content.decode()
    assert 'href="/agents/support-bot/"' in page
    assert logged_in(lead).get("/agents/support-bot/").status_code == 200
    # A backup decides once the action escalates, and only then opens its agent's page.
    assert logged_in(backup).get("/agents/support-bot/").status_code == 404
    Action.objects.filter(pk=action.pk).update(escalated_at=action.created_at)
    assert logged_in(backup).get("/agents/support-bot/").status_code == 200


def test_an_admin_opens_an_action_from_the_audit_viewer():
    world = build("admin")
    client = logged_in(world.user)
    assert f'href="/actions/{world.pending.pk}/"' in client.get("/audit/").content.decode()
    page = client.get(f"/actions/{world.pending.pk}/").content.decode()
    assert 'name="payload"' not in page  # seeing is not deciding


def test_an_owner_sees_her_agents_actions_read_only():
    world = build("owner")
    client = logged_in(world.user)
    assert f'href="/actions/{world.pending.pk}/"' in client.get("/agents/refund-bot/").content.decode()
    page = client.get(f"/actions/{world.pending.pk}/").content.decode()
    assert "You own Refund Bot" in page and 'name="reason"' not in page


def test_an_owner_who_leads_lifts_her_own_suspension_but_not_another_ones():
    world = build("owner_leading_its_department")
    owner, client = world.user, logged_in(world.user)

    client.post("/agents/refund-bot/suspend/", {"reason": "Looks off."})
    world.agent.refresh_from_db()
    assert (world.agent.status, world.agent.suspended_by) == (AgentStatus.SUSPENDED, owner)
    assert client.post("/agents/refund-bot/resume/", {"reason": "Checked it."}).status_code == 302
    world.agent.refresh_from_db()
    assert (world.agent.status, world.agent.suspended_by) == (AgentStatus.ACTIVE, None)

    suspend_agent(world.agent, actor=Actor.user(world.lead), reason="Refunds to the wrong account.")
    assert client.post("/agents/refund-bot/resume/", {"reason": "Mine, it is fine."}).status_code == 403
    suspend_page = client.get("/agents/refund-bot/").content.decode()
    assert "only the one who suspended it" in suspend_page and "/agents/refund-bot/resume/" not in suspend_page
    assert logged_in(world.lead).post("/agents/refund-bot/resume/", {"reason": "Fixed."}).status_code == 302
    world.agent.refresh_from_db()
    assert world.agent.status == AgentStatus.ACTIVE


def test_an_admin_is_who_holds_the_audit_permission_not_the_staff_flag_alone():
    staff = UserFactory(username="sid-staff", is_staff=True)
    assert not reach_of(staff).admin
    assert reach_of(AdminFactory(username="ada-admin")).admin
    assert reach_of(UserFactory(username="root", is_superuser=True)).admin
    inactive = AdminFactory(username="ivy-inactive", is_active=False)
    assert not reach_of(inactive).admin


# ---------------------------------------------------------------- layering


def imported_modules(app: str) -> set[str]:
    found = set()
    for path in (ROOT / app).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def test_imports_flow_from_approvals_to_agents_to_audit_never_upward():
    assert "approvals" not in imported_modules("agents")
    assert not {"approvals", "agents"} & imported_modules("audit")
