"""The action page, /actions/<id>/: the whole story of one action and what the
reader may do with it (approvals.reach decides who sees it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from approvals.models import (
    Action,
    Decision,
    DecisionVerdict,
    Execution,
    ExecutionKind,
    ExecutionOutcome,
)
from approvals.pages.requests import PageRequest
from approvals.reach import Reach, reach_of
from approvals.reads import payload_review, previews, queue
from approvals.reads.story import action_story
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from audit.people import Person

# Keyed by the stored verdict, a plain string (Decision.verdict).
PAST_TENSE: dict[str, str] = {
    DecisionVerdict.APPROVE: "Approved",
    DecisionVerdict.EDIT_APPROVE: "Edited and approved",
    DecisionVerdict.REJECT: "Rejected",
    DecisionVerdict.VETO: "Vetoed",
}


def _get_visible_action(user: Person, action_id: UUID) -> Action:
    """The action, if the user may see it (approvals.reach); else 404, so its existence stays private."""
    action = (
        reach_of(user)
        .actions_seen()
        .select_related("agent", "agent__owner", "action_type", "department")
        .filter(pk=action_id)
        .first()
    )
    if action is None:
        raise Http404("No such action among those you see.")
    return action


@login_required
def action_detail(request: PageRequest, action_id: UUID) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    return render(request, "approvals/action_detail.html", _action_context(request, action))


def _action_context(request: PageRequest, action: Action, **extra: Any) -> dict[str, Any]:
    user = request.user
    reach = reach_of(user)
    decisions = list(queue.decisions_of(action))
    mine = _standing_decision_of(user, action, decisions)
    may_decide = reach.decides(action)
    executions = list(action.executions.all())
    events = list(AuditEvent.objects.for_object(action).order_by("id"))
    reversible_until = _reversible_until(action, executions)
    review = payload_review.review(action, decisions, executed=_was_executed(action, executions))
    context = {
        "action": action,
        "decisions": decisions,
        "can": _what_user_can_do(user, action, may_decide, mine, reversible_until),
        "standing": _standing(reach, action, may_decide, mine, review.approvers),
        "rollback_note": _rollback_note(action, may_decide, reversible_until),
        "reversible_until": reversible_until,
        "outcome": _outcome(action, decisions),
        "payload_json": _pretty(action.payload),
        "approved_payload_json": None if action.approved_payload is None else _pretty(action.approved_payload),
        "context_json": _pretty(action.context),
        "edit_text": _pretty(action.effective_payload),
        # The edit form is built from these by static/countersign/edit_form.js: JSON in data
        # attributes (autoescaped), since htmx drops script elements from what it swaps in.
        "payload_schema_json": json.dumps(action.action_type.payload_schema),
        "standing_json": json.dumps(action.effective_payload),
        "preview": previews.preview_of(action.action_type, action.effective_payload),
        # The forms carry the digest of the payload this page shows: an
        # approval of a payload edited since is refused (services.approve).
        "payload_digest": action.standing_digest,
        "review": review,
        "edit_focus": request.GET.get("edit") == "1",
        "executions": [ExecutionRow.of(execution) for execution in executions],
        "rollback_request": _last_rollback_request(events),
        "agent_page_visible": reach.sees_agent(action.agent),
        "events": events,
        "story": action_story(action, decisions, executions, events),
        "history": queue.recent_history(action),
        "rate": queue.approval_rate(action),
    }
    context.update(extra)
    return context


# Past these, the standing payload was carried out: by a dispatch, or by its agent, which reported.
CARRIED_OUT = (Status.SUCCEEDED, Status.ROLLBACK_REQUESTED, Status.ROLLED_BACK)


def _was_executed(action: Action, executions: list[Execution]) -> bool:
    dispatched = any(e.kind == ExecutionKind.DISPATCH and e.outcome == ExecutionOutcome.SUCCEEDED for e in executions)
    return dispatched or action.status in CARRIED_OUT


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class ExecutionRow:
    """One dispatch or rollback attempt, with its JSON ready to read."""

    execution: Execution
    response_json: str
    undo_json: str

    @classmethod
    def of(cls, execution: Execution) -> ExecutionRow:
        return cls(
            execution,
            "" if execution.response is None else _pretty(execution.response),
            "" if execution.undo is None else _pretty(execution.undo),
        )


def _last_rollback_request(events: list[AuditEvent]) -> AuditEvent | None:
    """Who asked for the rollback, and why: the panel shows it while it runs."""
    return next((e for e in reversed(events) if e.verb == "action.rollback_requested"), None)


def _standing_decision_of(user: Person, action: Action, decisions: list[Decision]) -> Decision | None:
    """The user's decision that still stands: an approval of an earlier
    payload (another lead edited it since) leaves them free to approve this one."""
    standing = action.standing_digest
    return next((d for d in decisions if d.user_id == user.pk and d.stands_on(standing)), None)


def _what_user_can_do(
    user: Person, action: Action, may_decide: bool, mine: Decision | None, reversible_until: datetime | None
) -> dict[str, bool]:
    pending = action.status == Status.PENDING
    owns = action.agent.owner_id == user.pk
    return {
        "approve": pending and may_decide and not owns and mine is None,
        "reject": pending and may_decide and mine is None,
        "veto": may_decide and queue.place_of(action) == "veto",
        "mark": action.status == Status.SHADOWED and may_decide and mine is None,
        "rollback": _in_reversal_window(action, reversible_until) and may_decide,
    }


def _reversible_until(action: Action, executions: list[Execution]) -> datetime | None:
    """When the reversal window of a reversible action closes: its length
    after the last successful dispatch (the moment services.request_rollback
    counts from). None when it is not reversible or never succeeded."""
    if not action.action_type.reversible:
        return None
    succeeded = [
        e.finished_at
        for e in executions
        if e.kind == ExecutionKind.DISPATCH and e.outcome == ExecutionOutcome.SUCCEEDED and e.finished_at
    ]
    if not succeeded:
        return None
    return succeeded[-1] + timedelta(minutes=action.action_type.reversal_window_minutes)


def _in_reversal_window(action: Action, reversible_until: datetime | None) -> bool:
    return action.status == Status.SUCCEEDED and reversible_until is not None and timezone.now() <= reversible_until


def _rollback_note(action: Action, may_decide: bool, reversible_until: datetime | None) -> str:
    """Why a succeeded reversible action offers no rollback to this user; empty otherwise."""
    if action.status != Status.SUCCEEDED or not action.action_type.reversible:
        return ""
    if not _in_reversal_window(action, reversible_until):
        closed = f" at {timezone.localtime(reversible_until):%Y-%m-%d %H:%M}" if reversible_until else ""
        return f"The reversal window of this action closed{closed}: it can no longer be rolled back."
    if not may_decide:
        return f"Only the leads of {action.department} may roll this action back."
    return ""


def _standing(reach: Reach, action: Action, may_decide: bool, mine: Decision | None, approvers: list[str]) -> list[str]:
    """Why this user can or cannot decide, in the words the panel shows."""
    if action.status not in (Status.PENDING, Status.SHADOWED):
        return []
    notes = []
    department = action.department
    if action.agent.owner_id == reach.user.pk:
        notes.append(f"You own {action.agent.name}: you see its actions, and the leads of {department} decide them.")
    elif not may_decide:
        if action.escalated_at is None and department.pk in reach.backed_up_ids:
            deadline = timezone.localtime(action.sla_deadline).strftime("%Y-%m-%d %H:%M") if action.sla_deadline else ""
            notes.append(
                f"You are a backup approver for {department}: you may decide once this action escalates"
                + (f", after its SLA deadline ({deadline})." if deadline else ".")
            )
        else:
            notes.append(f"Only the leads of {department} decide this action.")
    required = action.action_type.approvals_required
    if action.status == Status.PENDING and required > 1:
        if mine is not None:
            notes.append("You approved. This critical action waits for a second approval from another lead.")
        elif approvers:
            notes.append(f"{', '.join(approvers)} approved; this critical action needs your second approval.")
        else:
            notes.append("Critical: it needs approvals from two different leads.")
    return notes


def _outcome(action: Action, decisions: list[Decision]) -> str:
    """Who decided a decided action, and how; empty while it waits."""
    if action.status in (Status.PENDING, Status.SHADOWED):
        return ""
    human = [d for d in decisions if d.verdict in queue.HUMAN_VERDICTS]
    # Past the decision (dispatched, rolled back...), say where it is now.
    later = "" if action.status in (Status.APPROVED, Status.REJECTED) else f"; it is now {action.get_status_display()}"
    if human:
        last = human[-1]
        when = timezone.localtime(last.created_at).strftime("%Y-%m-%d %H:%M")
        return f"{PAST_TENSE[last.verdict]} by {last.user.get_username()} at {when}{later}."
    if action.verdict == "approved":
        return f"Approved by policy ({action.verdict_reason or 'within the limits of its grant'}){later}."
    if action.status == Status.CANCELLED:
        return "Cancelled by its agent."
    return f"{action.get_status_display()}."
