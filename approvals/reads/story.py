"""The story of one action, as its page tells it: who did what to it, when,
and why, oldest first.

It is read from the rows that last: the action (its proposal and the
policy's verdict), its decisions (approvals, edits, rejections, vetoes,
shadow marks, each with its comment or reason) and its executions (every
dispatch and rollback attempt, with its error). What only the audit trail
holds comes from there: who asked for each rollback and why, a cancellation,
an expiry, an escalation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from approvals.models import (
    Action,
    Decision,
    DecisionVerdict,
    Execution,
    ExecutionKind,
    ExecutionOutcome,
    Executor,
    Verdict,
)
from audit.models import AuditEvent

# What the policy did with the proposal: "Policy <verdict>".
POLICY: dict[str, str] = {
    Verdict.APPROVED: "approved it",
    Verdict.PENDING: "sent it to a lead",
    Verdict.SHADOWED: "shadowed it (observer tier: never executed)",
    Verdict.BLOCKED: "blocked it",
}

DECIDED: dict[str, str] = {
    DecisionVerdict.APPROVE: "approved",
    DecisionVerdict.EDIT_APPROVE: "edited the payload and approved",
    DecisionVerdict.REJECT: "rejected",
    DecisionVerdict.VETO: "vetoed",
    DecisionVerdict.WOULD_APPROVE: "would have approved (shadow mark)",
    DecisionVerdict.WOULD_REJECT: "would have rejected (shadow mark)",
}

# What an attempt's outcome says, by kind: "<executor> carried it out".
ATTEMPTED: dict[str, dict[str, str]] = {
    ExecutionKind.DISPATCH: {
        ExecutionOutcome.RUNNING: "is carrying it out",
        ExecutionOutcome.SUCCEEDED: "carried it out",
        ExecutionOutcome.FAILED: "failed to carry it out",
        ExecutionOutcome.RETRYING: "failed to carry it out, will retry",
    },
    ExecutionKind.ROLLBACK: {
        ExecutionOutcome.RUNNING: "is rolling it back",
        ExecutionOutcome.SUCCEEDED: "rolled it back",
        ExecutionOutcome.FAILED: "failed to roll it back",
        ExecutionOutcome.RETRYING: "failed to roll it back, will retry",
    },
}

# The audit events that are part of the story and held nowhere else.
FROM_THE_AUDIT_TRAIL = {
    "action.rollback_requested": ("asked for a rollback", "rollback"),
    "action.cancelled": ("cancelled it", "cancelled"),
    "action.expired": ("let it expire undecided", "expired"),
    "action.escalated": ("escalated it to the backup approvers", "escalated"),
}


@dataclass(frozen=True)
class Entry:
    """One step: `who` `what`, at `at`, because of `reason` (may be empty).
    `kind` names the step for the page's styling (decision, veto, rollback...)."""

    at: datetime
    who: str
    what: str
    reason: str = ""
    kind: str = ""


def action_story(
    action: Action, decisions: Iterable[Decision], executions: Iterable[Execution], events: Iterable[AuditEvent]
) -> list[Entry]:
    """Every step of `action`, oldest first. `decisions` with their users,
    `executions` and `events` (its audit events) as the page read them."""
    entries = [
        Entry(action.created_at, action.agent.name, "proposed it", kind="proposed"),
        Entry(action.created_at, "Policy", POLICY[action.verdict], action.verdict_reason, "policy"),
    ]
    entries += [_decided(decision) for decision in decisions]
    entries += [_attempted(action, execution) for execution in executions]
    entries += [_audited(event) for event in events if event.verb in FROM_THE_AUDIT_TRAIL]
    # A stable sort: steps of one instant keep the order they were listed in
    # (a proposal before the policy's verdict on it).
    return sorted(entries, key=lambda entry: entry.at)


def _decided(decision: Decision) -> Entry:
    kind = "veto" if decision.verdict == DecisionVerdict.VETO else "decision"
    return Entry(decision.created_at, decision.user.get_username(), DECIDED[decision.verdict], decision.comment, kind)


def _attempted(action: Action, execution: Execution) -> Entry:
    # The agent carries out (and undoes) what it executes itself; the gateway
    # calls the target for a webhook action.
    who = action.agent.name if action.action_type.executor == Executor.AGENT else "Countersign"
    what = f"{ATTEMPTED[execution.kind][execution.outcome]} (attempt {execution.attempt})"
    return Entry(execution.finished_at or execution.started_at, who, what, execution.error, execution.kind)


def _audited(event: AuditEvent) -> Entry:
    what, kind = FROM_THE_AUDIT_TRAIL[event.verb]
    reason = (event.after or {}).get("reason", "")
    return Entry(event.created_at, event.actor_label or event.get_actor_kind_display(), what, str(reason), kind)
