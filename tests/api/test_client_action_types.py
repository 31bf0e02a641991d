"""POST /api/v1/action-types/: an agent makes an action type known (the MCP proxy does, on a tool's first
call). It gains nothing by it: the type is agent-executed, in its department, with no grant, so proposals of
it are blocked until an admin grants it; an existing type is never changed by an agent; it is audited."""

from __future__ import annotations

import pytest

from agents.models import Grant
from agents.services import suspend_agent
from approvals.models import Action, ActionType, Executor, Risk
from audit.log import Actor
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client, assert_error, post_json
from tests.support.factories import ActionTypeFactory, AgentFactory

pytestmark = pytest.mark.django_db

TYPES = "/api/v1/action-types/"
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


def test_it_creates_an_agent_executed_type_without_a_grant_and_audits_it(agent):
    client = api_client(agent)

    response = post_json(client, TYPES, {"slug": "mcp.files.write_file", "payload_schema": SCHEMA, "name": "Write"})

    assert response.status_code == 201, response.content
    assert response.json() == {
        "slug": "mcp.files.write_file",
        "name": "Write",
        "description": "",
        "risk": Risk.MEDIUM,
        "executor": Executor.AGENT,
        "payload_schema": SCHEMA,
        "granted": False,
    }
    action_type = ActionType.objects.get(slug="mcp.files.write_file")
    assert (action_type.executor, action_type.routing_department) == (Executor.AGENT, agent.department)
    assert not Grant.objects.filter(action_type=action_type).exists()
    event = AuditEvent.objects.get(verb="action_type.registered")
    assert (event.actor_kind, event.agent_id, event.department_id) == ("agent", agent.pk, agent.department_id)
    assert event.object_id == str(action_type.pk)


def test_a_proposal_of_a_registered_type_is_blocked_until_an_admin_grants_it(agent):
    client = api_client(agent)
    post_json(client, TYPES, {"slug": "mcp.files.write_file", "payload_schema": SCHEMA})

    response = post_json(
        client,
        "/api/v1/actions/",
        {"action_type": "mcp.files.write_file", "payload": {"path": "a.txt"}, "reasoning": "Save the notes."},
    )

    assert_error(response, 403, "not_granted")
    assert Action.objects.get().status == "blocked"


def test_registering_again_returns_the_type_unchanged(agent, department):
    existing = ActionTypeFactory(
        slug="payments.refund", executor=Executor.WEBHOOK, risk=Risk.HIGH, payload_schema={"type": "object"}
    )
    other = AgentFactory(slug="other-bot", department=department)

    response = post_json(
        api_client(other), TYPES, {"slug": "payments.refund", "payload_schema": SCHEMA, "name": "Free money"}
    )

    assert response.status_code == 200
    assert (response.json()["executor"], response.json()["risk"]) == (Executor.WEBHOOK, Risk.HIGH)
    existing.refresh_from_db()
    assert (existing.executor, existing.payload_schema, existing.name) == (
        Executor.WEBHOOK,
        {"type": "object"},
        existing.name,
    )
    assert existing.name != "Free money"
    assert not AuditEvent.objects.filter(verb="action_type.registered").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "has space", "payload_schema": SCHEMA}, "slug"),
        ({"slug": "ok.name", "payload_schema": {"type": "no-such-type"}}, "payload_schema"),
        ({"slug": "ok.name", "payload_schema": []}, "payload_schema"),
        ({"slug": "ok.name"}, "payload_schema"),
        ({"slug": "ok.name", "payload_schema": SCHEMA, "executor": "webhook"}, "executor"),
        ({"slug": "ok.name", "payload_schema": SCHEMA, "description": 0}, "description"),
    ],
)
def test_a_bad_request_is_refused_with_its_field_and_stores_nothing(agent, body, field):
    error = assert_error(post_json(api_client(agent), TYPES, body), 400, "invalid")

    assert field in error["fields"]
    assert not ActionType.objects.filter(slug=body["slug"]).exists()


def test_a_suspended_agent_registers_nothing(agent):
    suspend_agent(agent, actor=Actor.system("test"), reason="Under review.")

    response = post_json(api_client(agent), TYPES, {"slug": "mcp.files.write_file", "payload_schema": SCHEMA})

    assert_error(response, 403, "agent_suspended")
    assert not ActionType.objects.filter(slug="mcp.files.write_file").exists()


def test_it_answers_only_an_agents_key():
    assert_error(post_json(api_client(), TYPES, {"slug": "x.y", "payload_schema": SCHEMA}), 401, "unauthorized")
