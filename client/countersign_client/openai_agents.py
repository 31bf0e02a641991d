"""OpenAI Agents SDK: tool approval interruptions decided in Countersign.

    from agents import Agent, function_tool
    from countersign_client.openai_agents import CountersignApprovals

    approvals = CountersignApprovals(cs)
    agent = Agent(name="notes", tools=[approvals.gate(write_note, action_type="notes.write")], ...)
    result = await approvals.run(agent, "Save my note")

1. `gate` turns a FunctionTool into one that `needs_approval`: the SDK stops the run with a
   ToolApprovalItem (an interruption) instead of calling it.
2. `decide` proposes each interruption's arguments to Countersign and waits for every verdict (each item
   of a batch on its own, in parallel), then approves or rejects it in the run's state; a refusal's reason
   is what the model reads (`rejection_message`). `run` loops Runner.run → decide → resume until the run
   ends, however long the decisions take: nothing runs on a timeout.
3. The SDK has no "approve with other arguments"; the gated tool does it: it runs the original tool with
   the approved arguments (a lead may have edited them), never with the model's, and reports the outcome.
   A call that was not approved in Countersign never runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

try:
    from agents.tool_context import ToolContext

    from agents import Agent, FunctionTool, Runner, RunResult, RunState, ToolApprovalItem
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError(
        "The OpenAI Agents SDK adapter needs its extra: pip install 'countersign-client[openai-agents]'"
    ) from missing

from countersign_client.approval import Approval, ask, report_outcome
from countersign_client.client import Countersign, CountersignError


class CountersignApprovals:
    """Gates tools and decides their approval interruptions in Countersign, as the agent of `client`'s key."""

    def __init__(
        self,
        client: Countersign,
        *,
        reasoning: str | Callable[[str, dict[str, Any]], str] = "",
        wait_timeout: float | None = None,
    ) -> None:
        self.client, self.reasoning, self.wait_timeout = client, reasoning, wait_timeout
        self.action_types: dict[str, str] = {}  # tool name -> action type
        self.approved: dict[str, Approval] = {}  # call id -> its approval, until the tool runs

    def gate(self, tool: FunctionTool, *, action_type: str | None = None) -> FunctionTool:
        """`tool`, needing approval, and run only with arguments Countersign approved."""
        self.action_types[tool.name] = action_type or tool.name
        original = tool.on_invoke_tool

        async def invoke(context: ToolContext[Any], _model_arguments: str) -> Any:
            approval = self.approved.pop(context.tool_call_id, None)
            if approval is None:
                return "Refused: this call was not approved in Countersign."
            try:
                output = await original(context, json.dumps(approval.arguments))
            except Exception as failure:
                await asyncio.to_thread(
                    report_outcome, self.client, approval, "failed", f"{type(failure).__name__}: {failure}"
                )
                raise
            await asyncio.to_thread(report_outcome, self.client, approval, "succeeded", output)
            return output

        return dataclasses.replace(tool, needs_approval=True, on_invoke_tool=invoke)

    async def decide(self, result: RunResult) -> RunState:
        """The run's state with every interruption approved or rejected as Countersign decided."""
        state = result.to_state()
        verdicts = await asyncio.gather(*(self._ask(item) for item in result.interruptions))
        for item, (approval, refusal) in zip(result.interruptions, verdicts, strict=True):
            if approval is None:
                state.reject(item, rejection_message=refusal)
            else:
                self.approved[str(item.call_id)] = approval
                state.approve(item)
        return state

    async def run(self, agent: Agent[Any], run_input: Any, **options: Any) -> RunResult:
        """Runner.run, resumed after every interruption until the run ends."""
        result = await Runner.run(agent, run_input, **options)
        while result.interruptions:
            result = await Runner.run(agent, await self.decide(result), **options)
        return result

    async def _ask(self, item: ToolApprovalItem) -> tuple[Approval | None, str]:
        name = str(item.name)
        action_type = self.action_types.get(name)
        if action_type is None:
            return None, f"Refused: {name} is not a tool gated by Countersign."
        arguments = json.loads(item.arguments or "{}")
        why = self.reasoning(name, arguments) if callable(self.reasoning) else self.reasoning
        why = why or f"The agent called the tool {name}."
        try:
            approval = await asyncio.to_thread(
                ask, self.client, action_type, arguments, why, wait_timeout=self.wait_timeout
            )
        except CountersignError as refusal:
            return None, f"Refused by Countersign ({refusal.code}): {refusal.message}"
        if approval.by_gateway:
            return None, f"Countersign's gateway carried this out already ({approval.id})."
        return approval, ""
