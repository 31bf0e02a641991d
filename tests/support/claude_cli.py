"""A scripted Claude Code CLI for the Claude Agent SDK adapter's tests: a Transport (the SDK's own interface
for talking to the CLI) that plays the CLI's side of the control protocol, with no model and no network.

The script is one tool call, as the CLI makes it: answer `initialize`, connect to the SDK's in-process MCP
server, and when the user's prompt arrives ask `can_use_tool` for the tool; when allowed, call the tool
through the SDK's MCP server with the input the permission answer carries (`updatedInput`) and fire the
PostToolUse hook; then end the turn with a result. Everything the SDK answered is kept for the test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from claude_agent_sdk import Transport


class ScriptedCLI(Transport):
    def __init__(self, *, server: str, tool: str, tool_input: dict[str, Any]) -> None:
        self.server, self.tool, self.tool_input = server, tool, tool_input
        self.to_sdk_send, self.to_sdk = anyio.create_memory_object_stream[dict[str, Any]](100)
        self.from_sdk_send, self.from_sdk = anyio.create_memory_object_stream[dict[str, Any]](100)
        self.permission: dict[str, Any] | None = None  # the SDK's answer to can_use_tool
        self.tool_result: dict[str, Any] | None = None
        self.ready = False
        self._ids = 0
        self._answers: dict[str, dict[str, Any]] = {}
        self._backlog: list[dict[str, Any]] = []  # what the SDK sent while the CLI waited for an answer

    # ------------------------------------------------ the Transport interface

    async def connect(self) -> None:
        self.ready = True

    async def write(self, data: str) -> None:
        for line in data.splitlines():
            if line.strip():
                await self.from_sdk_send.send(json.loads(line))

    async def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._play)
            async for message in self.to_sdk:
                yield message
            tasks.cancel_scope.cancel()

    async def end_input(self) -> None:
        pass

    async def close(self) -> None:
        self.ready = False
        self.to_sdk_send.close()

    def is_ready(self) -> bool:
        return self.ready

    # ------------------------------------------------ the CLI's side

    async def _play(self) -> None:
        init = await self._next(lambda m: m.get("type") == "control_request")
        hooks = init["request"].get("hooks") or {}
        post_tool_use = [i for matcher in hooks.get("PostToolUse", []) for i in matcher["hookCallbackIds"]]
        await self._answer(init["request_id"], {"commands": [], "hooks_applied": True})
        await self._mcp({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": _MCP_INIT})
        await self._mcp({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await self._next(lambda m: m.get("type") == "user")
        name = f"mcp__{self.server}__{self.tool}"
        self.permission = await self._request(
            {"subtype": "can_use_tool", "tool_name": name, "input": self.tool_input, "tool_use_id": "toolu_1"}
        )
        if self.permission["behavior"] == "allow":
            call = {"name": self.tool, "arguments": self.permission["updatedInput"]}
            answer = await self._mcp({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
            self.tool_result = answer["mcp_response"]["result"]
            for callback_id in post_tool_use:
                hook_input = {
                    "hook_event_name": "PostToolUse",
                    "session_id": "s1",
                    "transcript_path": "",
                    "cwd": "",
                    "tool_name": name,
                    "tool_input": call["arguments"],
                    "tool_response": self.tool_result,
                    "tool_use_id": "toolu_1",
                }
                await self._request(
                    {
                        "subtype": "hook_callback",
                        "callback_id": callback_id,
                        "input": hook_input,
                        "tool_use_id": "toolu_1",
                    }
                )
        text = json.dumps(self.tool_result) if self.tool_result else self.permission.get("message", "")
        await self.to_sdk_send.send(_result(text))
        await self.to_sdk_send.send({"type": "system", "subtype": "session_state_changed", "state": "idle"})
        self.to_sdk_send.close()

    async def _next(self, wanted: Any) -> dict[str, Any]:
        for message in self._backlog:
            if wanted(message):
                self._backlog.remove(message)
                return message
        async for message in self.from_sdk:
            if message.get("type") == "control_response":
                response = message["response"]
                self._answers[response["request_id"]] = response
                continue
            if wanted(message):
                return message
        raise AssertionError("The SDK closed the connection first.")

    async def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        request_id = f"cli_{self._ids}"
        await self.to_sdk_send.send({"type": "control_request", "request_id": request_id, "request": request})
        while request_id not in self._answers:
            message = await self.from_sdk.receive()
            if message.get("type") == "control_response":
                self._answers[message["response"]["request_id"]] = message["response"]
            else:
                self._backlog.append(message)
        response = self._answers.pop(request_id)
        assert response["subtype"] == "success", response
        return response["response"]

    async def _mcp(self, message: dict[str, Any]) -> dict[str, Any]:
        return await self._request({"subtype": "mcp_message", "server_name": self.server, "message": message})

    async def _answer(self, request_id: str, response: dict[str, Any]) -> None:
        body = {"subtype": "success", "request_id": request_id, "response": response}
        await self.to_sdk_send.send({"type": "control_response", "response": body})


_MCP_INIT = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "claude-code", "version": "scripted"},
}


def _result(text: str) -> dict[str, Any]:
    return {
        "type": "result",
        "subtype": "success",
        "duration_ms": 1,
        "duration_api_ms": 0,
        "is_error": False,
        "num_turns": 1,
        "session_id": "s1",
        "result": text,
    }
