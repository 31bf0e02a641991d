"""Asking the gateway, the one way every part of this package does it: propose, wait for the verdict, and
say what the agent may do now. The decorator, the framework adapters and the MCP proxy all call `ask`."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from countersign_client.client import (
    Action,
    ApiError,
    Cancelled,
    Countersign,
    CountersignError,
    DispatchFailed,
    Expired,
    Rejected,
    Shadowed,
    TimedOut,
    _encode,
)

log = logging.getLogger("countersign")

GATEWAY = "webhook"  # the executor of action types the gateway carries out itself
# Where a gateway-executed action stands once it is approved, and where that ends.
CARRIED_OUT = frozenset({"approved", "dispatching", "succeeded", "failed", "rollback_requested", "rolled_back"})
DISPATCH_DONE = frozenset({"succeeded", "failed", "rollback_requested", "rolled_back"})


@dataclass(frozen=True)
class Approval:
    """An approved action. For an agent-executed type: carry out `arguments` (a lead's edit included), then
    report. For a gateway-executed type (`by_gateway`): the gateway has carried it out already; never do it
    again."""

    action: Action

    @property
    def id(self) -> str:
        return str(self.action["id"])

    @property
    def arguments(self) -> dict[str, Any]:
        edited = self.action.get("approved_payload")
        return dict(self.action["payload"] if edited is None else edited)

    @property
    def by_gateway(self) -> bool:
        return self.action.get("executor") == GATEWAY


def ask(
    client: Countersign,
    action_type: str,
    arguments: dict[str, Any],
    reasoning: str,
    *,
    confidence: float | None = None,
    amount: float | Decimal | str | None = None,
    context: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    wait_timeout: float | None = None,
) -> Approval:
    """Propose `arguments` as an action of `action_type` and wait until the agent may act on it.

    1. Propose. The policy may refuse at once: Blocked (the proposal is stored all the same) or Shadowed.
    2. Wait for a human when one must decide: without limit when wait_timeout is None, else withdraw the
       proposal at the deadline and raise TimedOut. Rejected (the lead's reason as message), Expired, Cancelled.
    3. Auto-approved: sit out the undo window, in which a lead may still veto (Rejected).
    4. A gateway-executed type: wait until the gateway's dispatch is over; DispatchFailed when it failed.
    """
    action = client.propose(
        action_type,
        arguments,
        reasoning,
        confidence=confidence,
        amount=amount,
        context=context,
        idempotency_key=idempotency_key,
    )
    action = settle(client, action, wait_timeout)
    refusal = refusal_of(action)
    if refusal is not None:
        raise refusal
    approval = Approval(action)
    if approval.by_gateway:
        approval = Approval(until_carried_out(client, action))
        if approval.action["status"] == "failed":
            raise DispatchFailed("dispatch_failed", "The gateway carried out the action; it failed.", action=action)
    return approval


def settle(client: Countersign, action: Action, wait_timeout: float | None) -> Action:
    """Wait for the verdict. Still pending at the deadline: withdraw the proposal, so nobody approves work
    that will not be done. Auto-approved: sit out the undo window, in which a lead may still veto."""
    action = client.wait(action["id"], timeout=wait_timeout)
    if action["status"] == "pending":
        try:
            withdrawn = client.cancel(action["id"])
        except ApiError as refused:
            if refused.code != "not_pending":
                raise
            action = client.get(action["id"])  # decided in the meantime: follow the decision
        else:
            limit = f"{wait_timeout:g} s" if wait_timeout is not None else "the wait"
            raise TimedOut("timed_out", f"No decision within {limit}; proposal withdrawn.", action=withdrawn)
    if action["status"] == "approved" and (left := _undo_window_left(action)) > 0:
        time.sleep(left + 0.2)
        action = client.get(action["id"])
    return action


def until_carried_out(client: Countersign, action: Action) -> Action:
    """A gateway-executed action once its dispatch is over (succeeded or failed). The long poll ends when
    an action leaves pending, so this reads again with a growing pause (0.2 s up to 2 s)."""
    pause = 0.2
    while action["status"] not in DISPATCH_DONE:
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
        action = client.get(action["id"])
    return action


def refusal_of(action: Action) -> CountersignError | None:
    """Why the agent may not go on, or None when the action is approved (for the gateway's executor: or
    already under way or done)."""
    status, decisions = action["status"], action.get("decisions") or []
    if status == "approved" or (action.get("executor") == GATEWAY and status in CARRIED_OUT):
        return None
    reason = (decisions[-1].get("comment") if decisions else "") or "no reason given"
    kind, message = {
        "rejected": (Rejected, reason),
        "expired": (Expired, "Nobody decided before the action expired."),
        "cancelled": (Cancelled, "The action was cancelled before a decision."),
        "shadowed": (Shadowed, "Observer tier: recorded for the leads, never executed."),
    }.get(status, (CountersignError, f"The action cannot be carried out now (status {status})."))
    return kind(status, message, action=action)


def report_outcome(client: Countersign, approval: Approval, outcome: str, detail: Any) -> None:
    """Report how the agent's execution went. The work is done (or failed) by now: a lost report must not
    turn it into an error the caller might answer by doing it again, so it is logged instead."""
    try:
        client.report(approval.id, outcome, as_json(detail))
    except CountersignError:
        log.exception("Could not report %s for Countersign action %s", outcome, approval.id)


def as_json(value: Any) -> Any:
    """`value` as JSON, or None when it is not JSON (the report's detail is optional)."""
    try:
        return json.loads(json.dumps(value, default=_encode))
    except (TypeError, ValueError):
        return None


def _undo_window_left(action: Action) -> float:
    raw = action.get("dispatch_after")
    if not raw:
        return 0.0
    return (datetime.fromisoformat(raw) - datetime.now(UTC)).total_seconds()
