"""Every change of an action's status happens here, and only here.

Each function runs in one transaction: it locks the action, checks the move
against approvals.lifecycle, writes the change and its audit event together,
and publishes the live update only after the commit.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import jsonschema
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from agents.models import Agent, Grant
from approvals import live, policy, routing
from approvals.lifecycle import IllegalTransition, Status, check_move
from approvals.models import (
    Action,
    ActionType,
    Decision,
    DecisionVerdict,
    Execution,
    ExecutionKind,
    ExecutionOutcome,
    Executor,
    GatewayState,
    NotificationMode,
    NotificationPreference,
    Verdict,
)
from audit.log import Actor, record

INITIAL_STATUS = {
    Verdict.BLOCKED: Status.BLOCKED,
    Verdict.SHADOWED: Status.SHADOWED,
    Verdict.PENDING: Status.PENDING,
    Verdict.APPROVED: Status.APPROVED,
}


class DecisionRefused(Exception):
    """The user may not make this decision on this action. Nothing changed."""


class InvalidPayload(Exception):
    """A payload does not match its action type's schema."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("The payload does not match the action type's schema.")


def payload_errors(action_type: ActionType, payload: Any) -> dict[str, list[str]]:
    """Field-level schema errors, keyed by the path into the payload ("" for the whole)."""
    validator = jsonschema.Draft202012Validator(action_type.payload_schema or {})
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.path)):
        path = ".".join(str(part) for part in error.absolute_path)
        errors.setdefault(path, []).append(error.message)
    return errors


# ---------------------------------------------------------------- proposing


def propose(
    agent: Agent,
    action_type: ActionType,
    *,
    payload: dict[str, Any],
    reasoning: str,
    confidence: Decimal | None = None,
    amount: Decimal | None = None,
    context: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> tuple[Action, bool]:
    """Record a proposal with the policy's verdict. Returns (action, created);
    with an idempotency key already used by this agent, the earlier action
    and False. The caller compares fingerprints to tell a replay from a clash.

    The policy rules first: a blocked proposal is stored (a safety signal)
    whatever its payload; any other must match the action type's schema.
    """
    try:
        with transaction.atomic():
            action = _record_proposal(
                agent, action_type, payload, reasoning, confidence, amount, context or {}, idempotency_key, fingerprint
            )
    except IntegrityError:
        # The unique constraint on (agent, idempotency_key) decided a race.
        existing = Action.objects.filter(agent=agent, idempotency_key=idempotency_key).first()
        if idempotency_key is None or existing is None:
            raise
        return existing, False
    return action, True


def _record_proposal(
    agent: Agent,
    action_type: ActionType,
    payload: dict[str, Any],
    reasoning: str,
    confidence: Decimal | None,
    amount: Decimal | None,
    context: dict[str, Any],
    idempotency_key: str | None,
    fingerprint: str,
) -> Action:
    # Locking the grant serializes this agent's proposals of this type, so two
    # at once cannot both take the day's last slot.
    # order_by() keeps the Meta ordering's joins, and so their locks, out.
    grant = Grant.objects.select_for_update().filter(agent=agent, action_type=action_type).order_by().first()
    ruling = policy.decide(
        policy.Proposal(
            risk=action_type.risk,
            agent_status=agent.status,
            gateway_paused=GatewayState.current().paused,
            grant=_terms(grant),
            amount=amount,
            confidence=confidence,
            **_todays_counters(grant),
        )
    )
    if ruling.verdict != Verdict.BLOCKED:
        errors = payload_errors(action_type, payload)
        if errors:
            raise InvalidPayload(errors)
    now = timezone.now()
    status = INITIAL_STATUS[Verdict(ruling.verdict)]
    action = Action.objects.create(
        agent=agent,
        action_type=action_type,
        grant=grant,
        department_id=routing.department_id_for(action_type, agent),
        status=status,
        payload=payload,
        reasoning=reasoning,
        confidence=confidence,
        amount=amount,
        context=context,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        verdict=ruling.verdict,
        verdict_code=ruling.code,
        verdict_reason=ruling.reason,
        expires_at=now + timedelta(hours=action_type.expiry_hours) if status == Status.PENDING else None,
        decided_at=now if status == Status.APPROVED else None,
        dispatch_after=_undo_window_end(action_type, now) if status == Status.APPROVED else None,
    )
    record(
        "action.proposed",
        action,
        actor=Actor.agent(agent),
        after={
            "status": status,
            "verdict": ruling.verdict,
            "code": ruling.code,
            "reason": ruling.reason,
            "action_type": action_type.slug,
            "amount": None if amount is None else str(amount),
        },
        department_id=action.department_id,
        agent_id=agent.pk,
    )
    _route_after_commit(action)
    return action


def _terms(grant: Grant | None) -> policy.GrantTerms | None:
    if grant is None:
        return None
    return policy.GrantTerms(
        tier=grant.tier,
        max_amount_per_action=grant.max_amount_per_action,
        max_actions_per_day=grant.max_actions_per_day,
        max_amount_per_day=grant.max_amount_per_day,
        auto_approve_max_amount=grant.auto_approve_max_amount,
        min_confidence=grant.min_confidence,
    )


def _todays_counters(grant: Grant | None) -> dict[str, Any]:
    """What this agent already proposed under this grant today, counted only
    when the grant has a daily limit; blocked proposals use up nothing."""
    if grant is None or (grant.max_actions_per_day is None and grant.max_amount_per_day is None):
        return {}
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    totals = (
        Action.objects.filter(agent_id=grant.agent_id, action_type_id=grant.action_type_id, created_at__gte=midnight)
        .exclude(status=Status.BLOCKED)
        .aggregate(n=Count("pk"), total=Sum("amount"))
    )
    return {"actions_today": totals["n"], "amount_today": totals["total"] or Decimal(0)}


def _undo_window_end(action_type: ActionType, approved_at: Any) -> Any:
    if action_type.reversible and action_type.undo_window_seconds:
        return approved_at + timedelta(seconds=action_type.undo_window_seconds)
    return approved_at


# ---------------------------------------------------------------- the core move


def _locked(action_id: UUID | str) -> Action:
    # Lock the action row only: the joined agent and action type rows are
    # shared by every action of theirs and must not serialize all decisions.
    return Action.objects.select_for_update(of=("self",)).select_related("action_type", "agent").get(pk=action_id)


def _move(
    action: Action, target: str, verb: str, actor: Actor, *, note: dict[str, Any] | None = None, **fields: Any
) -> None:
    """Move a locked action to `target`, write the audit event (with `note`
    added to its after), and publish after commit."""
    check_move(action.status, target)
    before = action.status
    # The status filter makes the update a claim: a concurrent mover that got
    # here first leaves nothing to update, and we refuse instead of forcing.
    updated = Action.objects.filter(pk=action.pk, status=before).update(
        status=target, updated_at=timezone.now(), **fields
    )
    if not updated:
        raise IllegalTransition(before, target, "Someone else changed this action first; nothing was changed.")
    action.status = target
    for name, value in fields.items():
        setattr(action, name, value)
    record(
        verb,
        action,
        actor=actor,
        before={"status": before},
        after={"status": target, **{k: _jsonable(v) for k, v in fields.items()}, **(note or {})},
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    _after_commit(action)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, dict, list)) or value is None:
        return value
    return str(value)


def _after_commit(action: Action) -> None:
    """Publish the change once it is committed (never a change that rolled back)."""
    action_id, department_id, status = action.pk, action.department_id, action.status
    transaction.on_commit(lambda: live.publish_action_changed(action_id, department_id, status))


def _route_after_commit(action: Action) -> None:
    """A new proposal: waiting ones are routed (which publishes), others published."""
    from approvals import tasks  # tasks import services; import here to keep the cycle out of module load

    if action.status in (Status.PENDING, Status.SHADOWED):
        action_id = str(action.pk)
        transaction.on_commit(lambda: tasks.route_action.delay(action_id))
    else:
        _after_commit(action)


# ---------------------------------------------------------------- deciding


def may_decide(user: Any, action: Action) -> bool:
    """Leads of the action's department decide; backup approvers once it has escalated."""
    if action.department.leads.filter(pk=user.pk).exists():
        return True
    return action.escalated_at is not None and action.department.backup_approvers.filter(pk=user.pk).exists()


def _check_decider(user: Any, action: Action, *, approving: bool) -> None:
    if not may_decide(user, action):
        raise DecisionRefused("Only the leads of this action's department may decide it.")
    if approving and action.agent.owner_id == user.pk:
        raise DecisionRefused("You own this agent, so you may not approve its actions.")


def _add_decision(action: Action, user: Any, verdict: str, comment: str, edited: Any = None) -> Decision:
    try:
        with transaction.atomic():
            return Decision.objects.create(
                action=action, user=user, verdict=verdict, comment=comment, edited_payload=edited
            )
    except IntegrityError as error:
        raise DecisionRefused(
            "You have already decided this action; another lead must give the second approval."
        ) from error


@transaction.atomic
def approve(action_id: UUID | str, user: Any, *, comment: str = "", edited_payload: Any = None) -> Action:
    """Approve, or edit and approve. Critical actions stay pending until a
    second, different lead approves too."""
    action = _locked(action_id)
    check_move(action.status, Status.APPROVED)
    _check_decider(user, action, approving=True)
    if edited_payload is not None:
        errors = payload_errors(action.action_type, edited_payload)
        if errors:
            raise InvalidPayload(errors)
    verdict = DecisionVerdict.APPROVE if edited_payload is None else DecisionVerdict.EDIT_APPROVE
    _add_decision(action, user, verdict, comment, edited_payload)
    approvals = action.decisions.filter(verdict__in=[DecisionVerdict.APPROVE, DecisionVerdict.EDIT_APPROVE])
    if approvals.count() < action.action_type.approvals_required:
        after: dict[str, Any] = {"approvals": approvals.count(), "required": action.action_type.approvals_required}
        if edited_payload is not None:
            # The edit stands for the second approver to see and approve; without
            # this, a plain second approval would execute the unedited proposal.
            Action.objects.filter(pk=action.pk).update(approved_payload=edited_payload, updated_at=timezone.now())
            action.approved_payload = after["approved_payload"] = edited_payload
        record(
            "action.first_approval",
            action,
            actor=Actor.user(user),
            after=after,
            department_id=action.department_id,
            agent_id=action.agent_id,
        )
        _after_commit(action)  # other leads' rows show "1 of 2 approvals"
        return action
    now = timezone.now()
    fields: dict[str, Any] = {"decided_at": now, "dispatch_after": now}
    if edited_payload is not None:
        fields["approved_payload"] = edited_payload
    _move(action, Status.APPROVED, "action.approved", Actor.user(user), **fields)
    return action


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise DecisionRefused("Say why you reject it: the reason goes back to the agent.")


@transaction.atomic
def reject(action_id: UUID | str, user: Any, *, reason: str) -> Action:
    _require_reason(reason)
    action = _locked(action_id)
    check_move(action.status, Status.REJECTED)
    if action.status != Status.PENDING:
        raise IllegalTransition(action.status, Status.REJECTED)
    _check_decider(user, action, approving=False)
    _add_decision(action, user, DecisionVerdict.REJECT, reason)
    _move(action, Status.REJECTED, "action.rejected", Actor.user(user), decided_at=timezone.now())
    return action


@transaction.atomic
def veto(action_id: UUID | str, user: Any, *, reason: str) -> Action:
    """Stop an auto-approved action inside its undo window, before dispatch."""
    _require_reason(reason)
    action = _locked(action_id)
    check_move(action.status, Status.REJECTED)
    if action.status != Status.APPROVED or action.dispatch_after is None or action.dispatch_after <= timezone.now():
        raise IllegalTransition(action.status, Status.REJECTED, "The undo window of this action has closed.")
    _check_decider(user, action, approving=False)
    _add_decision(action, user, DecisionVerdict.VETO, reason)
    _move(action, Status.REJECTED, "action.vetoed", Actor.user(user), decided_at=timezone.now())
    return action


@transaction.atomic
def mark_shadow(action_id: UUID | str, user: Any, *, would_approve: bool, comment: str = "") -> Decision:
    """A lead's would-approve / would-reject on an observer-tier action: evidence, no status change."""
    action = _locked(action_id)
    if action.status != Status.SHADOWED:
        raise DecisionRefused("Only shadowed actions take a would-approve or would-reject mark.")
    _check_decider(user, action, approving=False)
    verdict = DecisionVerdict.WOULD_APPROVE if would_approve else DecisionVerdict.WOULD_REJECT
    decision = _add_decision(action, user, verdict, comment)
    record(
        "action.shadow_marked",
        action,
        actor=Actor.user(user),
        after={"verdict": verdict},
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    return decision


@transaction.atomic
def cancel(action_id: UUID | str, agent: Agent) -> Action:
    action = _locked(action_id)
    if action.agent_id != agent.pk:
        raise Action.DoesNotExist
    _move(action, Status.CANCELLED, "action.cancelled", Actor.agent(agent))
    return action


@transaction.atomic
def expire(action_id: UUID | str) -> Action:
    action = _locked(action_id)
    _move(action, Status.EXPIRED, "action.expired", Actor.system("expiry"))
    return action


# ---------------------------------------------------------------- escalating


@transaction.atomic
def escalate(action_id: UUID | str) -> Action | None:
    """Hand a pending action past its SLA deadline to its department's backup
    approvers. Not a status change: the action stays pending, flagged by
    escalated_at, which is what lets may_decide admit the backups.

    1. Claim it: set escalated_at only if it is still pending, overdue and
       unflagged, so two escalation runs, or a run and a decision, never both win.
    2. Record "action.escalated" in the same transaction.
    3. After commit: tell its queues and email the backup approvers.

    Returns the action when this call escalated it; None when there was
    nothing to do (gone, decided, not yet overdue, or already escalated).
    """
    now = timezone.now()
    if not Action.objects.overdue(now).filter(pk=action_id).update(escalated_at=now, updated_at=now):
        return None
    action = Action.objects.select_related("action_type", "agent", "department").get(pk=action_id)
    backups = sorted(user.get_username() for user in action.department.backup_approvers.all())
    record(
        "action.escalated",
        action,
        actor=Actor.system("escalation"),
        before={"escalated_at": None},
        after={
            "escalated_at": now.isoformat(),
            "sla_deadline": action.sla_deadline.isoformat() if action.sla_deadline else None,
            "backup_approvers": backups,
        },
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    _after_escalation(action)
    return action


def _after_escalation(action: Action) -> None:
    from approvals import tasks  # see _after_commit

    action_id, department_id, status = action.pk, action.department_id, action.status
    transaction.on_commit(lambda: live.publish_action_changed(action_id, department_id, status))
    # Robust: the escalation has committed; a mail queue that is down is
    # logged, never turned into a failure of the caller.
    transaction.on_commit(lambda: tasks.notify_escalation.delay(str(action_id)), robust=True)


# ---------------------------------------------------------------- notification preferences


@transaction.atomic
def set_notification_mode(user: Any, mode: str, *, by: Any = None) -> NotificationPreference:
    """Choose how `user` hears of new items in the queues they lead
    (NotificationMode: immediate, hourly, off). `by` is who made the change,
    when not the user themselves. Raises ValueError for an unknown mode.

    Switching to the hourly digest starts its window now, so the first digest
    does not repeat items already emailed one by one.
    """
    chosen = NotificationMode(mode)
    preference, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
    before = preference.mode
    if before == chosen:
        return preference
    preference.mode = chosen
    if chosen == NotificationMode.HOURLY:
        preference.last_digest_at = timezone.now()
    preference.save(update_fields=["mode", "last_digest_at", "updated_at"])
    record(
        "notification_preference.changed",
        preference,
        actor=Actor.user(by or user),
        before={"mode": before},
        after={"mode": chosen.value},
    )
    return preference


# ---------------------------------------------------------------- carrying out


@transaction.atomic
def start_dispatch(action_id: UUID | str) -> Execution | None:
    """Claim an approved action for dispatch. None when it is not ready:
    gone, already claimed, still in its undo window, or held because the
    agent is suspended or the gateway paused."""
    action = Action.objects.select_for_update(of=("self",)).select_related("agent").filter(pk=action_id).first()
    if action is None or action.status != Status.APPROVED:
        return None
    if action.dispatch_after and action.dispatch_after > timezone.now():
        return None
    if not action.agent.is_active or GatewayState.current().paused:
        return None
    attempt = action.executions.filter(kind=ExecutionKind.DISPATCH).count() + 1
    _move(action, Status.DISPATCHING, "action.dispatch_started", Actor.system("dispatcher"))
    return Execution.objects.create(action=action, kind=ExecutionKind.DISPATCH, attempt=attempt)


@transaction.atomic
def finish_dispatch(
    execution_id: int, *, succeeded: bool, response: Any = None, error: str = "", undo: Any = None
) -> Action:
    execution = Execution.objects.select_for_update().get(pk=execution_id)
    action = _locked(execution.action_id)
    target = Status.SUCCEEDED if succeeded else Status.FAILED
    check_move(action.status, target)
    if action.status != Status.DISPATCHING:
        # approved -> succeeded is the agent's report, rollback_requested ->
        # succeeded a failed rollback: a late or repeated dispatch result is neither.
        raise IllegalTransition(action.status, target)
    _finish_execution(execution, succeeded, response, error, undo)
    _move(
        action,
        target,
        "action.dispatch_succeeded" if succeeded else "action.dispatch_failed",
        Actor.system("dispatcher"),
    )
    return action


@transaction.atomic
def report_result(
    action_id: UUID | str, agent: Agent, *, succeeded: bool, detail: Any = None, undo: Any = None
) -> Action:
    """An agent reports the outcome of an action it executed itself."""
    action = _locked(action_id)
    if action.agent_id != agent.pk:
        raise Action.DoesNotExist
    target = Status.SUCCEEDED if succeeded else Status.FAILED
    check_move(action.status, target)
    if action.status != Status.APPROVED:
        raise IllegalTransition(action.status, target)
    if action.action_type.executor != Executor.AGENT:
        raise IllegalTransition(
            action.status, target, "The gateway carries out this action; its agent does not report the result."
        )
    execution = Execution.objects.create(
        action=action, kind=ExecutionKind.DISPATCH, attempt=action.executions.count() + 1
    )
    error = "" if succeeded or detail is None else detail if isinstance(detail, str) else json.dumps(detail)
    _finish_execution(execution, succeeded, detail, error, undo)
    _move(action, target, "action.result_reported", Actor.agent(agent))
    return action


def _finish_execution(execution: Execution, succeeded: bool, response: Any, error: str, undo: Any) -> None:
    execution.outcome = ExecutionOutcome.SUCCEEDED if succeeded else ExecutionOutcome.FAILED
    execution.finished_at = timezone.now()
    execution.response = response
    execution.error = error
    execution.undo = undo
    execution.save(update_fields=["outcome", "finished_at", "response", "error", "undo"])


@transaction.atomic
def request_rollback(action_id: UUID | str, user: Any, *, reason: str) -> Action:
    action = _locked(action_id)
    check_move(action.status, Status.ROLLBACK_REQUESTED)
    if not action.action_type.reversible:
        raise DecisionRefused(f"{action.action_type.slug} is not reversible.")
    window = timedelta(minutes=action.action_type.reversal_window_minutes)
    succeeded_at = (
        action.executions.filter(kind=ExecutionKind.DISPATCH, outcome=ExecutionOutcome.SUCCEEDED)
        .values_list("finished_at", flat=True)
        .last()
    )
    if succeeded_at is None or timezone.now() > succeeded_at + window:
        raise DecisionRefused("The reversal window of this action has closed.")
    _check_decider(user, action, approving=False)
    _move(action, Status.ROLLBACK_REQUESTED, "action.rollback_requested", Actor.user(user), note={"reason": reason})
    return action


@transaction.atomic
def finish_rollback(action_id: UUID | str, *, succeeded: bool, response: Any = None, error: str = "") -> Action:
    action = _locked(action_id)
    target = Status.ROLLED_BACK if succeeded else Status.SUCCEEDED
    check_move(action.status, target)
    if action.status != Status.ROLLBACK_REQUESTED:
        raise IllegalTransition(action.status, target)  # approved/dispatching -> succeeded are not rollbacks
    attempt = action.executions.filter(kind=ExecutionKind.ROLLBACK).count() + 1
    execution = Execution.objects.create(action=action, kind=ExecutionKind.ROLLBACK, attempt=attempt)
    _finish_execution(execution, succeeded, response, error, None)
    _move(action, target, "action.rolled_back" if succeeded else "action.rollback_failed", Actor.system("dispatcher"))
    return action
