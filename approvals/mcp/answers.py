"""What a tools/call (or the check tool) answers, by the action's status.

Never an error while the action may still run (pending, approved, being
dispatched): the agent gets `action_id`, `status` and `url` in the
structured content and comes back with the check tool. An error result
(isError) when it will not run or did not work: blocked, shadowed, rejected,
expired, cancelled, failed; the reason is in the text and in `reason`.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from django.conf import settings

from approvals.mcp.tools import CHECK_TOOL
from approvals.models import Action, ExecutionKind, Executor
from approvals.rules.lifecycle import Status

REFUSED = frozenset({Status.BLOCKED, Status.SHADOWED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED})


def action_url(action: Action) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/api/v1/actions/{action.pk}/"


def _last_decision_comment(action: Action) -> str:
    decisions = sorted(action.decisions.all(), key=lambda decision: decision.created_at)
    return decisions[-1].comment if decisions else ""


def _last_dispatch(action: Action) -> Any:
    executions = [e for e in action.executions.all() if e.kind == ExecutionKind.DISPATCH]
    return max(executions, key=lambda e: e.attempt) if executions else None


def _reason(action: Action) -> str:
    if action.status == Status.BLOCKED:
        return f"Blocked by the policy ({action.verdict_code}): {action.verdict_reason}"
    if action.status == Status.SHADOWED:
        return (
            "Recorded for the leads and never carried out: your grant for this type is at the observer tier. "
            f"{action.verdict_reason}"
        ).strip()
    if action.status == Status.REJECTED:
        comment = _last_decision_comment(action)
        return f"Rejected by a lead: {comment}" if comment else "Rejected by a lead."
    if action.status == Status.EXPIRED:
        return "Expired: no lead decided before it expired. Nothing was carried out."
    if action.status == Status.CANCELLED:
        return "Cancelled before a decision. Nothing was carried out."
    if action.status == Status.FAILED:
        dispatch = _last_dispatch(action)
        error = dispatch.error if dispatch is not None and dispatch.error else "the outcome reported was a failure"
        return f"Approved, but carrying it out failed: {error}"
    return ""


def structured(action: Action) -> dict[str, Any]:
    """The structured content: enough to act on, and to come back."""
    content: dict[str, Any] = {
        "action_id": str(action.pk),
        "action_type": action.action_type.slug,
        "status": action.status,
        "url": action_url(action),
        "policy": {"verdict": action.verdict, "code": action.verdict_code, "reason": action.verdict_reason},
    }
    reason = _reason(action)
    if reason:
        content["reason"] = reason
    agent_runs_it = action.action_type.executor == Executor.AGENT
    if action.status == Status.APPROVED and agent_runs_it:
        content["approved_payload"] = action.effective_payload
        content["edited"] = action.approved_payload is not None
        content["report_url"] = f"{action_url(action)}result/"
    if action.status in (Status.SUCCEEDED, Status.FAILED, Status.ROLLBACK_REQUESTED, Status.ROLLED_BACK):
        dispatch = _last_dispatch(action)
        if dispatch is not None:
            content["result"] = dispatch.response
        content["executed_payload"] = action.effective_payload
    return content


def _say(action: Action, content: dict[str, Any]) -> str:
    status = action.status
    if status in REFUSED or status == Status.FAILED:
        return content["reason"]
    if status == Status.PENDING:
        return (
            f"Waiting for a lead's decision (action {action.pk}). Nothing has been carried out. "
            f"Call {CHECK_TOOL} with this action_id later for the decision."
        )
    if status == Status.APPROVED and action.action_type.executor == Executor.AGENT:
        edited = " A lead edited it: use approved_payload, not what you proposed." if content["edited"] else ""
        return (
            f"Approved.{edited} Carry it out with approved_payload, then report the outcome to "
            f"{content['report_url']} (outcome succeeded or failed)."
        )
    if status in (Status.APPROVED, Status.DISPATCHING):
        return (
            f"Approved; Countersign is carrying it out (status {status}). "
            f"Call {CHECK_TOOL} with this action_id later for the result."
        )
    if status == Status.SUCCEEDED:
        return "Approved and carried out."
    if status == Status.ROLLBACK_REQUESTED:
        return "Carried out; a lead has asked for it to be rolled back."
    return "Carried out, then rolled back by a lead."


def answer(action: Action) -> types.CallToolResult:
    content = structured(action)
    text = f"{_say(action, content)}\n\n{json.dumps(content, default=str)}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=content,
        is_error=action.status in REFUSED or action.status == Status.FAILED,
    )


def refusal(code: str, message: str, **details: Any) -> types.CallToolResult:
    """An error result for a call that never became an action (bad arguments, an unknown tool, ...)."""
    content = {"error": {"code": code, "message": message, **details}}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{message}\n\n{json.dumps(content, default=str)}")],
        structured_content=content,
        is_error=True,
    )
