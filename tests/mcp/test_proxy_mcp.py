"""countersign-mcp-proxy, run as the agent's MCP client would run it (a subprocess over stdio), in front of
a real upstream MCP server it starts itself (tests/support/mcp_upstream.py), against the real gateway: a tool is
refused until granted; an approved call reaches the upstream with the approved (edited) arguments; a
rejected one never does; read-only tools pass only when the proxy is told so."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from agents.models import Tier
from approvals import services
from approvals.models import Action, ActionType, Executor
from approvals.rules.lifecycle import Status
from approvals.services import action_types
from tests.support.agent_side import CLIENT_PACKAGE, key_for, when_proposed
from tests.support.factories import GrantFactory
from tests.support.servers import free_port, wait_for

pytestmark = pytest.mark.usefixtures("asgi_server")

UPSTREAM = Path(__file__).resolve().parents[1] / "support" / "mcp_upstream.py"
WRITE = "mcp.notes.write_note"
NOTE_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}


@pytest.fixture
def record(tmp_path) -> Path:
    path = tmp_path / "upstream.jsonl"
    path.touch()
    return path


def received(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def through_proxy(
    server_url: str,
    key: str,
    record: Path,
    session: Callable[[Client], Awaitable[Any]],
    *flags: str,
    upstream: tuple[str, ...] = ("--", sys.executable, str(UPSTREAM)),
) -> Any:
    """Start the proxy (which starts the upstream, unless given its URL), run `session` with an MCP client
    connected to it."""
    proxy = StdioServerParameters(
        command=sys.executable,
        args=["-m", "countersign_client.mcp_proxy", "--url", server_url, *flags, *upstream],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(CLIENT_PACKAGE),
            "COUNTERSIGN_KEY": key,
            "UPSTREAM_RECORD": str(record),
        },
    )

    async def run() -> Any:
        async with Client(proxy) as client:
            return await session(client)

    return asyncio.run(run())


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if hasattr(block, "text"))


def granted_write(agent) -> ActionType:
    action_type, _ = action_types.register(agent, WRITE, NOTE_SCHEMA)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def test_an_ungranted_tool_is_registered_and_refused_then_once_granted_the_approved_arguments_reach_it(
    asgi_server, agent, lead, record
):
    key = key_for(agent)
    call = lambda client: client.call_tool("write_note", {"path": "a.txt", "text": "draft", "reasoning": "Save it."})  # noqa: E731

    refused = through_proxy(asgi_server.url, key, record, call)

    assert refused.is_error
    assert "not_granted" in text_of(refused)
    assert received(record) == []  # the upstream never heard of it
    action_type = ActionType.objects.get(slug=WRITE)  # registered on first sight, with the tool's schema
    assert action_type.executor == Executor.AGENT
    assert action_type.payload_schema["required"] == ["path", "text"]
    assert Action.objects.get(action_type=action_type).status == Status.BLOCKED

    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)  # an admin grants it
    edit = {"path": "a.txt", "text": "final"}
    with when_proposed(lambda action: services.approve(action.pk, lead, edited_payload=edit), action_type=action_type):
        approved = through_proxy(asgi_server.url, key, record, call)

    assert not approved.is_error, text_of(approved)
    assert received(record) == [{"tool": "write_note", "arguments": {"path": "a.txt", "text": "final"}}]
    action = Action.objects.filter(action_type=action_type).latest("created_at")
    assert action.payload == {"path": "a.txt", "text": "draft"}  # reasoning is not part of the payload
    assert action.reasoning == "Save it."
    assert action.status == Status.SUCCEEDED  # reported as the agent-executed result
    assert action.executions.get().response == {"result": "wrote 5 characters to a.txt"}


def test_a_rejected_call_never_reaches_the_upstream(asgi_server, agent, lead, record):
    action_type = granted_write(agent)

    reject = lambda action: services.reject(action.pk, lead, reason="Not that file.")  # noqa: E731
    with when_proposed(reject, action_type=action_type):
        result = through_proxy(
            asgi_server.url,
            key_for(agent),
            record,
            lambda client: client.call_tool("write_note", {"path": "etc/passwd", "text": "x"}),
        )

    assert result.is_error
    assert "Not that file." in text_of(result)
    assert received(record) == []
    assert Action.objects.get(action_type=action_type).status == Status.REJECTED


def test_read_only_tools_pass_without_a_proposal_only_when_allowed(asgi_server, agent, record):
    key = key_for(agent)

    async def session(client: Client) -> tuple[list[str], Any]:
        tools = await client.list_tools()
        return [tool.name for tool in tools.tools], await client.call_tool("read_note", {"path": "a.txt"})

    names, allowed = through_proxy(asgi_server.url, key, record, session, "--allow-read-only")

    assert sorted(names) == ["delete_note", "read_note", "write_note"]
    assert not allowed.is_error
    assert received(record) == [{"tool": "read_note", "arguments": {"path": "a.txt"}}]
    assert not Action.objects.exists()

    gated = through_proxy(asgi_server.url, key, record, lambda client: client.call_tool("read_note", {"path": "b.txt"}))

    assert gated.is_error and "not_granted" in text_of(gated)
    assert len(received(record)) == 1  # the second read never reached it
    assert Action.objects.get().status == Status.BLOCKED


@pytest.fixture
def http_upstream(record) -> Iterator[str]:
    """The same upstream, over Streamable HTTP: its URL."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603  (our own test server)
        [sys.executable, str(UPSTREAM), "--http", str(port)],
        env={"PATH": os.environ["PATH"], "UPSTREAM_RECORD": str(record)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port) or process.poll() is not None, what="the HTTP upstream")
        assert process.poll() is None, "the HTTP upstream did not start"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_an_http_upstream_is_gated_the_same_way(asgi_server, agent, lead, record, http_upstream):
    action_type = granted_write(agent)

    with when_proposed(lambda action: services.approve(action.pk, lead), action_type=action_type):
        result = through_proxy(
            asgi_server.url,
            key_for(agent),
            record,
            lambda client: client.call_tool("write_note", {"path": "a.txt", "text": "hello"}),
            upstream=("--upstream-url", http_upstream, "--prefix", "mcp.notes"),
        )

    assert not result.is_error, text_of(result)
    assert received(record) == [{"tool": "write_note", "arguments": {"path": "a.txt", "text": "hello"}}]
    assert Action.objects.get(action_type=action_type).status == Status.SUCCEEDED


def test_the_client_hears_progress_while_a_lead_has_not_decided(asgi_server, agent, lead, record):
    action_type = granted_write(agent)
    heard: list[str] = []
    progressed = threading.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append(str(message))
        progressed.set()

    def approve_after_progress(action: Action) -> None:
        assert progressed.wait(timeout=30), "no progress notification while the call waited"
        services.approve(action.pk, lead)

    with when_proposed(approve_after_progress, action_type=action_type):
        result = through_proxy(
            asgi_server.url,
            key_for(agent),
            record,
            lambda client: client.call_tool(
                "write_note", {"path": "a.txt", "text": "hello"}, progress_callback=on_progress
            ),
            "--progress-seconds",
            "0.2",
            "--wait-timeout",
            "45",  # should no progress come, the lead never decides: the call is withdrawn, the test fails
        )

    assert not result.is_error, text_of(result)
    assert heard[0] == f"Waiting for a decision in Countersign ({WRITE})"
    assert len(received(record)) == 1
