"""What the MCP door refuses, as the REST API does: a bad, revoked or
missing key (401, before any MCP is spoken); a type without a grant (not
listed, and a call is a blocked proposal, stored and audited); a suspended
agent; invalid arguments and a forbidden callback URL (nothing stored); an
unknown tool; another agent's action in the check tool; past the agent's
rate limit, shared with its REST requests (429). A replayed idempotency key
is the same action."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.utils import timezone

from agents.models import AgentKey, Tier
from agents.services import revoke_key, suspend_agent
from approvals.api.throttle import AgentRateThrottle
from approvals.models import Action, Verdict
from approvals.rules.lifecycle import Status
from audit.log import Actor
from audit.models import AuditEvent
from tests.api.test_api_keys import new_key
from tests.support import mcp_client
from tests.support.factories import ActionTypeFactory, AgentFactory, GrantFactory

ARGUMENTS = {"note": "ship the spare part", "reasoning": "The customer's unit broke twice."}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


@pytest.fixture
def parts_type(agent):
    action_type = ActionTypeFactory(slug="parts.ship", name="Ship a spare part")
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def post_mcp(url: str, authorization: str | None) -> httpx.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return httpx.post(f"{url}/mcp/", json=INITIALIZE, headers=headers, timeout=10)


def test_a_bad_revoked_expired_or_missing_key_gets_401_before_any_mcp(asgi_server, agent):
    raw = new_key(agent)
    revoke_key(AgentKey.objects.get(), actor=Actor.system("tests"))
    expired = new_key(agent, expires_at=timezone.now() - timedelta(minutes=1))
    for authorization in (None, "Bearer csk_nope_nothing", f"Bearer {raw}", f"Bearer {expired}", f"Basic {raw}"):
        response = post_mcp(asgi_server.url, authorization)
        assert response.status_code == 401, (authorization, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert post_mcp(asgi_server.url, f"Bearer {new_key(agent)}").status_code == 200
    with pytest.raises(Exception):  # noqa: B017  (the SDK client fails to initialize, whatever its error type)
        mcp_client.now(asgi_server.url, raw, mcp_client.list_tools)


def test_a_type_without_a_grant_is_not_listed_and_a_call_is_refused_as_the_policy_blocks_it(
    asgi_server, agent, parts_type
):
    records_delete = ActionTypeFactory(slug="records.delete", name="Delete a record")
    GrantFactory(agent=AgentFactory(slug="other-bot"), action_type=records_delete)  # someone else's grant
    key = new_key(agent)
    assert "records_delete" not in {
        tool.name for tool in mcp_client.now(asgi_server.url, key, mcp_client.list_tools).tools
    }
    result = mcp_client.now(asgi_server.url, key, mcp_client.call("records_delete", ARGUMENTS))
    assert result.is_error
    assert result.structured_content["status"] == Status.BLOCKED
    assert result.structured_content["policy"]["code"] == "not_granted"
    blocked = Action.objects.get()  # stored, as the REST API stores a blocked proposal: a safety signal
    assert blocked.verdict == Verdict.BLOCKED and blocked.action_type.slug == "records.delete"
    assert AuditEvent.objects.get(verb="action.proposed", object_id=str(blocked.pk)).context["door"] == "mcp"


def test_a_suspended_agent_is_refused(asgi_server, agent, parts_type):
    key = new_key(agent)
    suspend_agent(agent, actor=Actor.system("circuit breaker"), reason="Three failures in a row.")
    result = mcp_client.now(asgi_server.url, key, mcp_client.call("parts_ship", ARGUMENTS))
    assert result.is_error
    assert result.structured_content["policy"]["code"] == "agent_suspended"
    assert Action.objects.get().status == Status.BLOCKED


def test_bad_arguments_an_unknown_tool_and_a_forbidden_callback_store_nothing(asgi_server, agent, parts_type, settings):
    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.example.com"]
    key = new_key(agent)

    async def calls(session: Any) -> list[Any]:
        return [
            await session.call_tool("parts_ship", {"note": "no reasoning"}),
            await session.call_tool("parts_ship", {"note": 7, "reasoning": "wrong type"}),
            await session.call_tool("parts.ship", ARGUMENTS),
            await session.call_tool("parts_ship", {**ARGUMENTS, "callback_url": "https://evil.example.net/x"}),
            await session.call_tool("parts_ship", {**ARGUMENTS, "callback_url": "http://hooks.example.com/x"}),
        ]

    missing, wrong, unknown, elsewhere, plain = mcp_client.now(asgi_server.url, key, calls)
    assert all(result.is_error for result in (missing, wrong, unknown, elsewhere, plain))
    assert missing.structured_content["error"]["fields"] == {"reasoning": ["This field is required."]}
    assert "payload.note" in wrong.structured_content["error"]["fields"]
    assert unknown.structured_content["error"]["code"] == "unknown_tool"
    assert "CALLBACK_ALLOWED_HOSTS" in elsewhere.structured_content["error"]["fields"]["callback_url"][0]
    assert "https" in plain.structured_content["error"]["fields"]["callback_url"][0]
    assert not Action.objects.exists()


def test_the_check_tool_shows_only_the_agents_own_actions_and_a_replay_is_the_same_action(
    asgi_server, agent, parts_type, settings
):
    settings.MCP_WAIT_SECONDS = 0
    other = AgentFactory(slug="other-bot", department=agent.department)
    GrantFactory(agent=other, action_type=parts_type, tier=Tier.CONTRIBUTOR)
    theirs = mcp_client.now(asgi_server.url, new_key(other), mcp_client.call("parts_ship", ARGUMENTS))
    key = new_key(agent)

    async def calls(session: Any) -> list[Any]:
        again = {**ARGUMENTS, "idempotency_key": "ticket-77"}
        return [
            await session.call_tool("countersign_check_action", {"action_id": theirs.structured_content["action_id"]}),
            await session.call_tool("countersign_check_action", {"action_id": "not-a-uuid"}),
            await session.call_tool("parts_ship", again),
            await session.call_tool("parts_ship", again),
            await session.call_tool("parts_ship", {**again, "note": "another body"}),
        ]

    not_theirs, not_an_id, first, replay, clash = mcp_client.now(asgi_server.url, key, calls)
    assert not_theirs.is_error and not_theirs.structured_content["error"]["code"] == "not_found"
    assert not_an_id.is_error and not_an_id.structured_content["error"]["code"] == "invalid"
    assert not first.is_error and first.structured_content["status"] == "pending"
    assert replay.structured_content["action_id"] == first.structured_content["action_id"]
    assert clash.is_error and clash.structured_content["error"]["code"] == "idempotency_conflict"
    assert Action.objects.filter(agent=agent).count() == 1


def test_mcp_requests_count_against_the_agents_rate_limit_with_its_rest_requests(asgi_server, agent, monkeypatch):
    pinned = 1_900_000_020.0  # the clock is pinned, never read; a minute of this test's own
    monkeypatch.setattr(AgentRateThrottle, "rate", "2/min")
    monkeypatch.setattr(AgentRateThrottle, "now", staticmethod(lambda: pinned))
    window = int(pinned // 60)
    cache.delete_many([AgentRateThrottle.cache_key(agent.pk, window + offset) for offset in (-1, 0)])
    raw = new_key(agent)
    assert httpx.get(f"{asgi_server.url}/api/v1/me/", headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    assert post_mcp(asgi_server.url, f"Bearer {raw}").status_code == 200
    refused = post_mcp(asgi_server.url, f"Bearer {raw}")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "throttled"
    assert int(refused.headers["Retry-After"]) >= 1
