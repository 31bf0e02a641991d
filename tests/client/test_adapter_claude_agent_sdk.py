"""The Claude Agent SDK adapter, run for real: the SDK's query() with CountersignPermissions as its
can_use_tool and hooks, an in-process SDK MCP server holding the tool, and a scripted CLI on the other end
of the SDK's Transport (tests/support/claude_cli.py: no model, no network). The proposal reaches the gateway; a
lead decides through the service; the tool runs with the approved (edited) input, or never runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, create_sdk_mcp_server, query, tool

from agents.models import Tier
from approvals import services
from approvals.models import Action
from approvals.rules.lifecycle import Status
from countersign_client import Countersign
from countersign_client.claude_agent_sdk import CountersignPermissions
from tests.support.agent_side import key_for, when_proposed
from tests.support.claude_cli import ScriptedCLI
from tests.support.factories import ActionTypeFactory, GrantFactory

pytestmark = pytest.mark.usefixtures("asgi_server")

NOTE_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}


@pytest.fixture
def note_type(agent):
    action_type = ActionTypeFactory(slug="claude.mcp__notes__write_note", payload_schema=NOTE_SCHEMA)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def run_agent(server_url: str, key: str, written: list[dict[str, Any]]) -> tuple[ScriptedCLI, list[Any]]:
    @tool("write_note", "Write a note to a file.", {"path": str, "text": str})
    async def write_note(args: dict[str, Any]) -> dict[str, Any]:
        written.append(args)
        return {"content": [{"type": "text", "text": f"wrote {args['path']}"}]}

    cli = ScriptedCLI(server="notes", tool="write_note", tool_input={"path": "a.txt", "text": "draft"})

    async def main() -> list[Any]:
        with Countersign(server_url, key) as cs:
            gate = CountersignPermissions(cs, reasoning="The user asked to save the note.")
            options = ClaudeAgentOptions(
                mcp_servers={"notes": create_sdk_mcp_server("notes", tools=[write_note])},
                can_use_tool=gate.can_use_tool,
                hooks=gate.hooks(),
            )
            return [message async for message in query(prompt="Save my note", options=options, transport=cli)]

    return cli, asyncio.run(main())


def test_an_approved_call_runs_with_the_leads_edited_input_and_is_reported(asgi_server, agent, lead, note_type):
    written: list[dict[str, Any]] = []

    edit = lambda action: services.approve(action.pk, lead, edited_payload={"path": "a.txt", "text": "final"})  # noqa: E731
    with when_proposed(edit, action_type=note_type):
        cli, messages = run_agent(asgi_server.url, key_for(agent), written)

    assert cli.permission == {"behavior": "allow", "updatedInput": {"path": "a.txt", "text": "final"}}
    assert written == [{"path": "a.txt", "text": "final"}]
    assert any(isinstance(message, ResultMessage) for message in messages)
    action = Action.objects.get(action_type=note_type)
    assert (action.payload, action.reasoning) == (
        {"path": "a.txt", "text": "draft"},
        "The user asked to save the note.",
    )
    assert action.status == Status.SUCCEEDED  # the PostToolUse hook reported it
    assert action.executions.get().response["content"][0]["text"] == "wrote a.txt"


def test_a_rejected_call_is_denied_with_the_reason_and_never_runs(asgi_server, agent, lead, note_type):
    written: list[dict[str, Any]] = []

    reject = lambda action: services.reject(action.pk, lead, reason="Not in that folder.")  # noqa: E731
    with when_proposed(reject, action_type=note_type):
        cli, _ = run_agent(asgi_server.url, key_for(agent), written)

    assert cli.permission["behavior"] == "deny"
    assert "Not in that folder." in cli.permission["message"]
    assert written == []
    assert Action.objects.get(action_type=note_type).status == Status.REJECTED


def test_an_ungranted_tool_is_denied_at_once(asgi_server, agent):
    ActionTypeFactory(slug="claude.mcp__notes__write_note", payload_schema=NOTE_SCHEMA)  # no grant
    written: list[dict[str, Any]] = []

    cli, _ = run_agent(asgi_server.url, key_for(agent), written)

    assert cli.permission["behavior"] == "deny"
    assert "not_granted" in cli.permission["message"]
    assert written == []
