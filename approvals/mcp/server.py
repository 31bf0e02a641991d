"""The MCP server's handlers: tools/list and tools/call, on the SDK's
low-level Server. Every call goes through the agent API's own flow
(approvals.api.proposals.submit: serializer, idempotency, services.propose,
the policy, the audit event), marked `door: mcp` in the audit context.

Waiting (a pending decision, a gateway-run dispatch) parks on the event
loop in approvals.api.waiting.until_settled, as the long poll does: no
thread and no database connection is held while it waits. Every database
step runs in a worker thread and gives its connection back when it ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import mcp_types as types
from django.conf import settings
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from rest_framework.exceptions import ValidationError

from agents.models import Agent, AgentKey
from approvals.api import errors, proposals, waiting
from approvals.api.errors import ApiError
from approvals.mcp import answers, tools
from approvals.models import Action, Executor
from approvals.rules.lifecycle import Status
from audit import context

SCOPE_KEY = "countersign.caller"
WAIT_FOR_DECISION = frozenset({Status.PENDING})
WAIT_FOR_DISPATCH = frozenset({Status.PENDING, Status.APPROVED, Status.DISPATCHING})


@dataclass(frozen=True)
class Caller:
    """The agent behind an MCP request, as door.py authenticated it."""

    agent_id: int
    key_id: int
    key_prefix: str
    ip: str = ""
    user_agent: str = ""

    def enter(self) -> None:
        """Name the door in the audit context of what this thread writes."""
        context.update(door="mcp", key_prefix=self.key_prefix, ip=self.ip, user_agent=self.user_agent)


def _caller(ctx: ServerRequestContext[Any, Any]) -> Caller:
    request = ctx.request
    caller = request.scope.get(SCOPE_KEY) if request is not None else None
    if not isinstance(caller, Caller):  # door.py lets no request through without one
        raise PermissionError("An MCP request without an authenticated agent.")
    return caller


# Every database step: in the loop's shared executor, its connection given back after.
_db = waiting.in_shared_thread


# ---------------------------------------------------------------- tools/list


def _check_tool() -> types.Tool:
    return types.Tool(
        name=tools.CHECK_TOOL,
        description="The current status and decision of one of your actions, by its action_id (as a call "
        "answered with status 'pending' gave it). With `wait`, waits up to that many seconds for it to move on.",
        input_schema={
            "type": "object",
            "properties": {
                "action_id": {"type": "string", "format": "uuid"},
                "wait": {"type": "integer", "minimum": 0, "maximum": settings.MCP_WAIT_SECONDS},
            },
            "required": ["action_id"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True),
    )


def _list(caller: Caller) -> list[types.Tool]:
    caller.enter()
    agent = Agent.objects.get(pk=caller.agent_id)
    listed = [
        types.Tool(
            name=entry.name,
            title=entry.grant.action_type.name,
            description=tools.description(entry.grant),
            input_schema=tools.input_schema(entry.grant.action_type),
            annotations=types.ToolAnnotations(
                title=entry.grant.action_type.name,
                read_only_hint=False,
                destructive_hint=not entry.grant.action_type.reversible,
                open_world_hint=True,
            ),
        )
        for entry in tools.granted(agent)
    ]
    return [*listed, _check_tool()]


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=await _db(_list, _caller(ctx)))


# ---------------------------------------------------------------- tools/call


def _propose(caller: Caller, name: str, arguments: dict[str, Any]) -> UUID | types.CallToolResult:
    """The proposal behind a call: its action's id, or the refusal to answer."""
    caller.enter()
    agent = Agent.objects.select_related("department").get(pk=caller.agent_id)
    key = AgentKey.objects.get(pk=caller.key_id)
    action_type = tools.action_type_named(name)
    if action_type is None:
        return answers.refusal("unknown_tool", f"No tool is named {name!r}: ask tools/list for yours.")
    try:
        submitted = proposals.submit(agent, key, tools.proposal_body(action_type, arguments))
    except (ApiError, ValidationError) as refused:
        response = errors.handle(refused, {})
        assert response is not None  # both are DRF APIExceptions
        error = response.data["error"]
        return answers.refusal(**error)
    return submitted.action.pk


def _waits_through(action_id: UUID) -> tuple[str, frozenset[str]]:
    """The action's status, and the statuses a call waits through for it."""
    status, executor = Action.objects.filter(pk=action_id).values_list("status", "action_type__executor").get()
    return status, WAIT_FOR_DISPATCH if executor == Executor.WEBHOOK else WAIT_FOR_DECISION


def _still_in(action_id: UUID, statuses: frozenset[str]) -> bool:
    return Action.objects.filter(pk=action_id, status__in=statuses).exists()


async def _settle(ctx: ServerRequestContext[Any, Any], action_id: UUID, seconds: float) -> None:
    """Wait up to `seconds` for the action to be decided (and, for a type the
    gateway carries out, dispatched), reporting progress meanwhile."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        status, through = await _db(_waits_through, action_id)
        left = deadline - time.monotonic()
        if status not in through or left <= 0:
            return
        waiting_for = "a lead's decision" if status == Status.PENDING else "the dispatch to finish"
        await ctx.session.report_progress(
            round(time.monotonic() - start, 1),
            float(seconds),
            f"Action {action_id} is {status}: waiting for {waiting_for}.",
        )

        async def still_waiting(through: frozenset[str] = through) -> bool:
            return await _db(_still_in, action_id, through)

        await waiting.until_settled(action_id, min(settings.MCP_PROGRESS_SECONDS, left), still_waiting, still=through)


def _answer(action_id: UUID) -> types.CallToolResult:
    action = Action.objects.select_related("action_type").prefetch_related("decisions", "executions").get(pk=action_id)
    return answers.answer(action)


def _own(caller: Caller, raw: Any) -> UUID | types.CallToolResult:
    try:
        action_id = UUID(str(raw))
    except ValueError:
        return answers.refusal("invalid", "action_id is the id of one of your actions (a UUID).")
    if not Action.objects.filter(pk=action_id, agent_id=caller.agent_id).exists():
        return answers.refusal("not_found", "No such action among yours.")
    return action_id


async def _check(
    ctx: ServerRequestContext[Any, Any], caller: Caller, arguments: dict[str, Any]
) -> types.CallToolResult:
    wait = arguments.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= settings.MCP_WAIT_SECONDS:
        return answers.refusal("invalid", f"wait is a whole number of seconds from 0 to {settings.MCP_WAIT_SECONDS}.")
    unknown = sorted(set(arguments) - {"action_id", "wait"})
    if unknown:
        return answers.refusal("invalid", f"Unknown argument(s): {', '.join(unknown)}.")
    owned = await _db(_own, caller, arguments.get("action_id"))
    if isinstance(owned, types.CallToolResult):
        return owned
    if wait:
        await _settle(ctx, owned, wait)
    return await _db(_answer, owned)


async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    caller = _caller(ctx)
    arguments = dict(params.arguments or {})
    if params.name == tools.CHECK_TOOL:
        return await _check(ctx, caller, arguments)
    proposed = await _db(_propose, caller, params.name, arguments)
    if isinstance(proposed, types.CallToolResult):
        return proposed
    await _settle(ctx, proposed, settings.MCP_WAIT_SECONDS)
    return await _db(_answer, proposed)


def build() -> Server[Any]:
    return Server(
        "countersign",
        version="1",
        instructions="Each tool proposes an action to Countersign, an approval gateway: it runs only once approved. "
        f"A call may answer status 'pending' with an action_id; ask {tools.CHECK_TOOL} for it later.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
