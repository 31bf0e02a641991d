"""Claude Agent SDK: a `can_use_tool` callback that asks Countersign, and hooks that report the outcome.

    from claude_agent_sdk import ClaudeAgentOptions, query
    from countersign_client.claude_agent_sdk import CountersignPermissions

    gate = CountersignPermissions(cs, action_type=lambda tool: f"claude.{tool}")
    options = ClaudeAgentOptions(can_use_tool=gate.can_use_tool, hooks=gate.hooks(), ...)

1. When Claude wants a tool, the CLI asks the SDK's `can_use_tool`; the gate proposes the call's input as an
   action (of the type `action_type(tool_name)`) and waits for the verdict, without a time limit unless
   you give `wait_timeout`: a long decision is waited for, never answered by running the tool.
2. Approved: allow, with the approved input as `updated_input` (a lead may have edited it), so the tool
   runs with exactly what was approved. Refused, rejected, expired, shadowed: deny, with the reason as the
   message Claude reads; the tool never runs. A type the gateway carries out itself is denied as well,
   with a message that says it was done: running it again would do it twice.
3. The PostToolUse / PostToolUseFailure hooks report the tool's outcome as the action's result.

Tools named in `allow` (e.g. read-only ones such as "Read", "Grep") pass without a proposal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

try:
    import anyio
    from claude_agent_sdk import (
        HookMatcher,
        PermissionResultAllow,
        PermissionResultDeny,
        ToolPermissionContext,
    )
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError(
        "The Claude Agent SDK adapter needs its extra: pip install 'countersign-client[claude-agent-sdk]'"
    ) from missing

from countersign_client.approval import Approval, ask, report_outcome
from countersign_client.client import Countersign, CountersignError


class CountersignPermissions:
    """The permission callback and the reporting hooks of one agent, talking to Countersign with `client`."""

    def __init__(
        self,
        client: Countersign,
        *,
        action_type: Callable[[str], str] = lambda tool: f"claude.{tool}",
        reasoning: str | Callable[[str, dict[str, Any]], str] = "",
        wait_timeout: float | None = None,
        allow: Iterable[str] = (),
    ) -> None:
        self.client, self.action_type = client, action_type
        self.reasoning, self.wait_timeout = reasoning, wait_timeout
        self.allow = frozenset(allow)
        self.pending: dict[str, Approval] = {}  # by tool_use_id: approved calls whose outcome is not reported yet

    async def can_use_tool(
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        if tool_name in self.allow:
            return PermissionResultAllow()
        why = self.reasoning(tool_name, tool_input) if callable(self.reasoning) else self.reasoning
        why = why or context.title or f"Claude wants to use {tool_name}."
        try:
            approval = await anyio.to_thread.run_sync(
                lambda: ask(self.client, self.action_type(tool_name), tool_input, why, wait_timeout=self.wait_timeout),
                abandon_on_cancel=True,
            )
        except CountersignError as refusal:
            return PermissionResultDeny(message=f"Refused by Countersign ({refusal.code}): {refusal.message}")
        if approval.by_gateway:
            return PermissionResultDeny(message=f"Countersign's gateway carried this out already ({approval.id}).")
        if context.tool_use_id:
            self.pending[context.tool_use_id] = approval
        return PermissionResultAllow(updated_input=approval.arguments)

    def hooks(self) -> dict[str, list[HookMatcher]]:
        """For ClaudeAgentOptions(hooks=...): report each approved tool call's outcome."""
        return {
            "PostToolUse": [HookMatcher(hooks=[self._succeeded], on_failure="continue")],
            "PostToolUseFailure": [HookMatcher(hooks=[self._failed], on_failure="continue")],
        }

    async def _succeeded(self, hook_input: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        await self._report(tool_use_id or hook_input.get("tool_use_id"), "succeeded", hook_input.get("tool_response"))
        return {}

    async def _failed(self, hook_input: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        await self._report(tool_use_id or hook_input.get("tool_use_id"), "failed", hook_input.get("error"))
        return {}

    async def _report(self, tool_use_id: str | None, outcome: str, detail: Any) -> None:
        approval = self.pending.pop(tool_use_id or "", None)
        if approval is not None:
            await anyio.to_thread.run_sync(report_outcome, self.client, approval, outcome, detail)
