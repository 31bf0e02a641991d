"""Deciding: approve (as proposed or edited), reject, veto, shadow marks,
expiry and escalation; who may decide is approvals.reach's rule."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Grant
from approvals import enqueue, live
from approvals.models import (
    APPROVING,
    Action,
    Decision,
    DecisionVerdict,
)
from approvals.rules import policy, routing
from approvals.rules.digests import payload_digest
from approvals.rules.lifecycle import IllegalTransition, Status, check_move
from approvals.services.moves import (
    DecisionRefused,
    EditRefused,
    InvalidPayload,
    PayloadChanged,
    after_commit,
    check_decider,
    dispatch_after_commit,
    jsonable,
    locked,
    move,
)
from approvals.services.proposals import _merged, _terms, _todays_counters, money_of, payload_errors
from audit.log import Actor, record
from audit.people import Person


def _add_decision(
    action: Action, user: Person, verdict: str, comment: str, edited: Any = None, digest: str = ""
) -> Decision:
    """Record one decision of `user` on the locked action. Refused when they
    already decided on the payload standing now: any rejection, veto or mark,
    or an approval of this payload. An approval of an earlier payload (another
    lead edited it since) does not count, so its author may decide again."""
    if action.decisions.filter(user=user).standing_on(action.standing_digest).exists():
        raise DecisionRefused("You have already decided on this payload; another lead must give the second approval.")
    try:
        with transaction.atomic():
            return Decision.objects.create(
                action=action, user=user, verdict=verdict, comment=comment, edited_payload=edited, payload_digest=digest
            )
    except IntegrityError as error:
        raise DecisionRefused(
            "You have already decided on this payload; another lead must give the second approval."
        ) from error


def approvers_of(action: Action, digest: str) -> int:
    """How many different people approved exactly the payload with this digest."""
    return action.decisions.filter(verdict__in=APPROVING, payload_digest=digest).values("user").distinct().count()


@transaction.atomic
def approve(
    action_id: UUID | str,
    user: Person,
    *,
    comment: str = "",
    edited_payload: Any = None,
    seen_digest: str | None = None,
) -> Action:
    """Approve, or edit and approve, one exact payload.

    1. `seen_digest`, when given, is the digest of the payload the lead read;
       if the standing payload is another by now, refuse (PayloadChanged).
    2. An edit is judged like a proposal (_judge_edit): the schema, the
       amount read from it, the grant's hard limits with the day's counters.
    3. The decision records the digest of the payload it approves.
    4. The action is approved once as many different people as its type
       requires (critical: two) approved that same digest. An edit changes
       the digest, so it restarts the count, the editor being the first.
       Until then it stays pending, the edit standing for the next approver.
    """
    action = locked(action_id)
    check_move(action.status, Status.APPROVED)
    check_decider(user, action, approving=True)
    if seen_digest is not None and seen_digest != action.standing_digest:
        raise PayloadChanged
    edit = {} if edited_payload is None else _judge_edit(action, edited_payload)
    digest = payload_digest(action.effective_payload if edited_payload is None else edited_payload)
    verdict = DecisionVerdict.APPROVE if edited_payload is None else DecisionVerdict.EDIT_APPROVE
    _add_decision(action, user, verdict, comment, edited_payload, digest)
    approvals, required = approvers_of(action, digest), action.action_type.approvals_required
    if approvals < required:
        after: dict[str, Any] = {"approvals": approvals, "required": required, "payload_digest": digest}
        if edit:
            # The edit stands for the next approver to see and approve (its
            # amount, so the queue row and the day's counters, with it).
            Action.objects.filter(pk=action.pk).update(**edit, updated_at=timezone.now())
            for name, value in edit.items():
                setattr(action, name, value)
            after.update({name: jsonable(value) for name, value in edit.items()})
        record(
            "action.first_approval",
            action,
            actor=Actor.user(user),
            after=after,
            department_id=action.department_id,
            agent_id=action.agent_id,
        )
        after_commit(action)  # other leads' rows show "1 of 2 approvals"
        return action
    now = timezone.now()
    note = {"payload_digest": digest, "approvals": approvals}
    move(
        action,
        Status.APPROVED,
        "action.approved",
        Actor.user(user),
        note=note,
        decided_at=now,
        dispatch_after=now,
        **edit,
    )
    dispatch_after_commit(action)
    return action


def _judge_edit(action: Action, edited: Any) -> dict[str, Any]:
    """An edited payload judged like a proposal: its schema, the amount it
    carries, and the grant's hard limits (policy.judge_edit) with the counters
    of the action's day without itself. Returns the fields that follow the
    edit; raises InvalidPayload or EditRefused, and nothing changes."""
    action_type = action.action_type
    money, amount_errors = money_of(action_type, edited)
    errors = _merged(payload_errors(action_type, edited), amount_errors)
    if errors:
        raise InvalidPayload(errors)
    # Locked as a proposal locks it: an edit and a proposal of the same agent
    # and type cannot both take the day's last room under a limit.
    grant = (
        Grant.objects.select_for_update().filter(agent_id=action.agent_id, action_type=action_type).order_by().first()
    )
    ruling = policy.judge_edit(
        policy.Proposal(
            risk=action_type.risk,
            grant=_terms(grant),
            amount=money.amount,
            confidence=action.confidence,
            **_todays_counters(grant, without=action),
        )
    )
    if ruling is not None:
        raise EditRefused(ruling)
    return {
        "approved_payload": edited,
        "amount": money.amount,
        "currency": money.currency,
        "priority": routing.priority(action_type.risk, money.amount),
    }


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise DecisionRefused("Say why you reject it: the reason goes back to the agent.")


@transaction.atomic
def reject(action_id: UUID | str, user: Person, *, reason: str) -> Action:
    _require_reason(reason)
    action = locked(action_id)
    check_move(action.status, Status.REJECTED)
    if action.status != Status.PENDING:
        raise IllegalTransition(action.status, Status.REJECTED)
    check_decider(user, action, approving=False)
    _add_decision(action, user, DecisionVerdict.REJECT, reason)
    move(action, Status.REJECTED, "action.rejected", Actor.user(user), decided_at=timezone.now())
    return action


@transaction.atomic
def veto(action_id: UUID | str, user: Person, *, reason: str) -> Action:
    """Stop an auto-approved action inside its undo window, before dispatch."""
    _require_reason(reason)
    action = locked(action_id)
    check_move(action.status, Status.REJECTED)
    if action.status != Status.APPROVED or action.dispatch_after is None or action.dispatch_after <= timezone.now():
        raise IllegalTransition(action.status, Status.REJECTED, "The undo window of this action has closed.")
    check_decider(user, action, approving=False)
    _add_decision(action, user, DecisionVerdict.VETO, reason)
    move(action, Status.REJECTED, "action.vetoed", Actor.user(user), decided_at=timezone.now())
    return action


@transaction.atomic
def mark_shadow(action_id: UUID | str, user: Person, *, would_approve: bool, comment: str = "") -> Decision:
    """A lead's would-approve / would-reject on an observer-tier action:
    evidence for its promotion, no status change. Only a decider marks, never
    the agent's owner (approvals.reach)."""
    action = locked(action_id)
    if action.status != Status.SHADOWED:
        raise DecisionRefused("Only shadowed actions take a would-approve or would-reject mark.")
    check_decider(user, action, approving=False)
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
def expire(action_id: UUID | str) -> Action:
    action = locked(action_id)
    move(action, Status.EXPIRED, "action.expired", Actor.system("expiry"))
    return action


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
    action_id, department_id, status = action.pk, action.department_id, action.status
    transaction.on_commit(lambda: live.publish_action_changed(action_id, department_id, status), robust=True)
    # Robust: the escalation has committed; a mail queue that is down is
    # logged, never turned into a failure of the caller.
    enqueue.delay_on_commit("notify_escalation", str(action_id))
