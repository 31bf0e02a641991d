"""Every change of an action's status happens here, and only here.

Each function runs in one transaction: it locks the action, checks the move
against approvals.lifecycle, writes the change and its audit event together,
and publishes the live update only after the commit.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import jsonschema
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import Agent, AgentKey, Grant
from approvals import amounts, breaker, callbacks, executors, live, policy, reach, routing
from approvals.digests import payload_digest
from approvals.lifecycle import IllegalTransition, Status, check_move
from approvals.models import (
    APPROVING,
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


class PayloadChanged(DecisionRefused):
    """The approval was given on a payload that is no longer the one standing."""

    def __init__(self) -> None:
        super().__init__(
            "The payload changed since you opened it: another lead edited it. Nothing was approved; "
            "read the payload as it stands now and decide again."
        )


class EditRefused(DecisionRefused):
    """An edited payload is over a hard limit of the agent's grant."""

    def __init__(self, ruling: policy.Ruling) -> None:
        self.ruling = ruling
        super().__init__(f"The edit is refused ({ruling.code}): {ruling.reason}. Nothing was approved.")


class InvalidPayload(Exception):
    """A payload does not match its action type's schema, or lacks a valid amount where its type says."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("The payload does not match the action type's schema.")


class AmountMismatch(Exception):
    """The agent declared an amount other than the one its payload carries."""

    def __init__(self, declared: Decimal, money: amounts.Money, action_type: ActionType) -> None:
        self.declared, self.derived = declared, money.amount
        if money.amount is None:
            message = f"{action_type.slug} moves no money, yet the proposal declares an amount of {declared}."
        else:
            message = (
                f"The declared amount {declared} differs from the payload's {money.amount} "
                f"(at '{action_type.amount_path}'). The amount is read from the payload: "
                "leave it out, or send the same."
            )
        super().__init__(message)


def payload_errors(action_type: ActionType, payload: Any) -> dict[str, list[str]]:
    """Field-level schema errors, keyed by the path into the payload ("" for the whole)."""
    validator = jsonschema.Draft202012Validator(action_type.payload_schema or {})
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.path)):
        path = ".".join(str(part) for part in error.absolute_path)
        errors.setdefault(path, []).append(error.message)
    return errors


def money_of(action_type: ActionType, payload: Any) -> tuple[amounts.Money, dict[str, list[str]]]:
    """The amount and currency the payload carries where its action type says,
    and the errors (keyed like payload_errors) when it carries no valid one."""
    try:
        return action_type.money_in(payload), {}
    except amounts.AmountError as error:
        return amounts.Money(None), error.errors


def _merged(*errors: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for each in errors:
        for path, messages in each.items():
            merged.setdefault(path, []).extend(m for m in messages if m not in merged.get(path, []))
    return merged


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
    callback_url: str = "",
    callback_key: AgentKey | None = None,
) -> tuple[Action, bool]:
    """Record a proposal with the policy's verdict. Returns (action, created);
    with an idempotency key already used by this agent, the earlier action
    and False. The caller compares fingerprints to tell a replay from a clash.

    The amount is read from the payload (ActionType.amount_path); a declared
    `amount` must be the same, else AmountMismatch and nothing is stored.
    The policy rules first: a blocked proposal is stored (a safety signal)
    whatever its payload; any other must match the action type's schema and
    carry a valid amount where its type says (else InvalidPayload).
    `callback_url` (vetted by the caller with callbacks.url_error) is told
    of each later move; `callback_key`, the key that proposed, signs it.
    """
    money, amount_errors = money_of(action_type, payload)
    # Compared as decimals: 19.9 declared as a float is the payload's 19.90.
    if amount is not None and not amount_errors and Decimal(str(amount)) != money.amount:
        raise AmountMismatch(amount, money, action_type)
    try:
        with transaction.atomic():
            action = _record_proposal(
                agent,
                action_type,
                payload,
                reasoning,
                confidence,
                money,
                amount_errors,
                context or {},
                idempotency_key,
                fingerprint,
                callback_url=callback_url,
                callback_key=callback_key if callback_url else None,
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
    money: amounts.Money,
    amount_errors: dict[str, list[str]],
    context: dict[str, Any],
    idempotency_key: str | None,
    fingerprint: str,
    **stored: Any,
) -> Action:
    amount = money.amount
    # Locking the grant serializes this agent's proposals of this type, so two
    # at once cannot both take the day's last slot. The gateway's pause comes
    # with it, in the same round trip (it only matters when there is a grant).
    # order_by() keeps the Meta ordering's joins, and so their locks, out.
    grant = (
        Grant.objects.select_for_update()
        .annotate(gateway_paused=Coalesce(Subquery(GatewayState.objects.filter(pk=1).values("paused")), False))
        .filter(agent=agent, action_type=action_type)
        .order_by()
        .first()
    )
    ruling = policy.decide(
        policy.Proposal(
            risk=action_type.risk,
            agent_status=agent.status,
            gateway_paused=grant is not None and grant.gateway_paused,
            grant=_terms(grant),
            amount=amount,
            confidence=confidence,
            **_todays_counters(grant),
        )
    )
    if ruling.verdict != Verdict.BLOCKED:
        errors = _merged(payload_errors(action_type, payload), amount_errors)
        if errors:
            raise InvalidPayload(errors)
    now = timezone.now()
    status = INITIAL_STATUS[Verdict(ruling.verdict)]
    department = routing.department_for(action_type, agent)
    waiting = status in (Status.PENDING, Status.SHADOWED)
    action = Action.objects.create(
        agent=agent,
        action_type=action_type,
        grant=grant,
        department=department,
        status=status,
        payload=payload,
        reasoning=reasoning,
        confidence=confidence,
        amount=amount,
        currency=money.currency,
        context=context,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        verdict=ruling.verdict,
        verdict_code=ruling.code,
        verdict_reason=ruling.reason,
        created_at=now,
        # Urgency is set here, not by the routing task, so the row can be
        # pushed to the leads' screens the moment the proposal commits.
        priority=routing.priority(action_type.risk, amount) if waiting else 0,
        sla_deadline=routing.sla_deadline(now, department.decision_sla) if waiting else None,
        expires_at=now + timedelta(hours=action_type.expiry_hours) if status == Status.PENDING else None,
        decided_at=now if status == Status.APPROVED else None,
        dispatch_after=_undo_window_end(action_type, now) if status == Status.APPROVED else None,
        **stored,
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
            "currency": money.currency,
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


def _todays_counters(grant: Grant | None, without: Action | None = None) -> dict[str, Any]:
    """What this agent already proposed under this grant today, counted only
    when the grant has a daily limit; blocked proposals use up nothing.

    `without`: an action being edited. Its day's counters, without itself
    (an action counts on the day it was proposed, with its current amount):
    today's, when it was proposed today."""
    if grant is None or (grant.max_actions_per_day is None and grant.max_amount_per_day is None):
        return {}
    day_of = timezone.localtime() if without is None else timezone.localtime(without.created_at)
    midnight = day_of.replace(hour=0, minute=0, second=0, microsecond=0)
    same_day = Action.objects.filter(
        agent_id=grant.agent_id, action_type_id=grant.action_type_id, created_at__gte=midnight
    ).exclude(status=Status.BLOCKED)
    if without is not None:
        next_midnight = timezone.make_aware(datetime.combine(midnight.date() + timedelta(days=1), time.min))
        same_day = same_day.filter(created_at__lt=next_midnight).exclude(pk=without.pk)
    totals = same_day.aggregate(n=Count("pk"), total=Sum("amount"))
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
    callbacks.announce(action, verb)
    _after_commit(action)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, dict, list)) or value is None:
        return value
    return str(value)


def _after_commit(action: Action) -> None:
    """Publish the change once it is committed (never a change that rolled back).
    Robust: the change has committed, so a channel layer that is down (Redis
    restarting) is logged, never turned into an error for the caller; screens
    that missed the push catch up when their socket reconnects."""
    action_id, department_id, status = action.pk, action.department_id, action.status
    transaction.on_commit(lambda: live.publish_action_changed(action_id, department_id, status), robust=True)
    if settings.SLACK_BOT_TOKEN:
        # Every message posted about it shows where it stands now, wherever it was decided (approvals.slack).
        from approvals import tasks  # tasks import services; import here to keep the cycle out of module load

        transaction.on_commit(lambda: tasks.update_slack_messages.delay(str(action_id)), robust=True)


def _route_after_commit(action: Action) -> None:
    """A new proposal: on the leads' screens at once; a waiting one is then
    routed by a task (its audit event and the leads' emails)."""
    from approvals import tasks  # tasks import services; import here to keep the cycle out of module load

    action_id, department_id, status = action.pk, action.department_id, action.status
    # Robust: the proposal has committed and its answer must reach the agent;
    # a screen that missed the push catches up when its socket re-syncs.
    transaction.on_commit(lambda: live.publish_action_changed(action_id, department_id, status), robust=True)
    if status in (Status.PENDING, Status.SHADOWED):
        # Robust too: a broker that is down must not turn a committed proposal
        # into an error. The sweep routes what is still unrouted (sweeper.unrouted).
        transaction.on_commit(lambda: tasks.route_action.delay(str(action_id)), robust=True)
    _dispatch_after_commit(action)  # approved by the policy: dispatched when its undo window ends


# ---------------------------------------------------------------- deciding


def may_decide(user: Any, action: Action) -> bool:
    """approvals.reach's rule: the leads of the action's department, its
    backups once it has escalated, never the agent's owner."""
    return reach.reach_of(user).decides(action)


def _check_decider(user: Any, action: Action, *, approving: bool) -> None:
    """Approve, reject, veto, shadow-mark and roll back all ask this; the
    owner is named only to say why."""
    if may_decide(user, action):
        return
    if action.agent.owner_id == user.pk:
        verb = "approve" if approving else "decide"
        raise DecisionRefused(f"You own this agent, so you may not {verb} its actions.")
    raise DecisionRefused("Only the leads of this action's department may decide it.")


def _add_decision(
    action: Action, user: Any, verdict: str, comment: str, edited: Any = None, digest: str = ""
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
    user: Any,
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
    action = _locked(action_id)
    check_move(action.status, Status.APPROVED)
    _check_decider(user, action, approving=True)
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
            after.update({name: _jsonable(value) for name, value in edit.items()})
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
    note = {"payload_digest": digest, "approvals": approvals}
    _move(
        action,
        Status.APPROVED,
        "action.approved",
        Actor.user(user),
        note=note,
        decided_at=now,
        dispatch_after=now,
        **edit,
    )
    _dispatch_after_commit(action)
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
    """A lead's would-approve / would-reject on an observer-tier action:
    evidence for its promotion, no status change. Only a decider marks, never
    the agent's owner (approvals.reach)."""
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
    transaction.on_commit(lambda: live.publish_action_changed(action_id, department_id, status), robust=True)
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
#
# A webhook action is dispatched by approvals.tasks.dispatch_action: it claims
# an attempt here (start_dispatch, or retry_dispatch for the next ones), makes
# the call (approvals.executors) and records its outcome (finish_dispatch, or
# retry_later). An agent-executed action waits for its agent's report_result,
# until the sweeper times it out. Rollbacks go the same two ways.
# docs/dispatch.md tells the whole story.


def _dispatch_after_commit(action: Action) -> None:
    """Have an approved webhook action dispatched once this commits, when its
    undo window ends. Robust: should the enqueue be lost, the sweeper re-queues it."""
    if action.status != Status.APPROVED or action.action_type.executor != Executor.WEBHOOK:
        return
    from approvals import tasks  # see _route_after_commit

    action_id, due = str(action.pk), action.dispatch_after
    transaction.on_commit(lambda: tasks.enqueue_dispatch(action_id, due), robust=True)


def _held(action: Action) -> bool:
    """The kill switch, read under the action's lock: a suspended agent's
    actions, and every action while the gateway is paused, do not start."""
    return not action.agent.is_active or GatewayState.current().paused


def _locked_or_none(action_id: UUID | str) -> Action | None:
    return (
        Action.objects.select_for_update(of=("self",))
        .select_related("action_type", "agent")
        .filter(pk=action_id)
        .first()
    )


def attempt_lost_after(action_type: ActionType) -> timedelta:
    """How long a running attempt may go without an outcome before its worker counts as lost."""
    return timedelta(seconds=action_type.webhook_timeout_seconds + settings.DISPATCH_GRACE_SECONDS)


def _round(action: Action, kind: str) -> list[Execution]:
    """This round's attempts of `kind`, newest first: all of a dispatch's; a
    rollback's since the last rollback that ended (one per request)."""
    attempts = []
    for execution in action.executions.filter(kind=kind).order_by("-attempt"):
        if execution.outcome in (ExecutionOutcome.SUCCEEDED, ExecutionOutcome.FAILED):
            break
        attempts.append(execution)
    return attempts


def _next_attempt_due(latest: Execution, action_type: ActionType, now: Any) -> bool:
    """After `latest`, may another attempt start now? When it is retrying and
    its backoff is over, or running with no outcome long past its time-out."""
    if latest.outcome == ExecutionOutcome.RETRYING:
        return latest.retry_at is None or latest.retry_at <= now
    return latest.outcome == ExecutionOutcome.RUNNING and latest.started_at <= now - attempt_lost_after(action_type)


LOST = "No outcome: the worker making this attempt was lost."


@transaction.atomic
def start_dispatch(action_id: UUID | str) -> Execution | None:
    """Claim an approved action for dispatch. None when it is not ready:
    gone, already claimed, still in its undo window, or held because the
    agent is suspended or the gateway paused."""
    action = _locked_or_none(action_id)
    if action is None or action.status != Status.APPROVED:
        return None
    if action.dispatch_after and action.dispatch_after > timezone.now():
        return None
    if _held(action):
        return None
    attempt = action.executions.filter(kind=ExecutionKind.DISPATCH).count() + 1
    _move(action, Status.DISPATCHING, "action.dispatch_started", Actor.system("dispatcher"))
    return Execution.objects.create(action=action, kind=ExecutionKind.DISPATCH, attempt=attempt)


@transaction.atomic
def retry_dispatch(action_id: UUID | str) -> Execution | None:
    """Claim the next attempt of a dispatching action whose last attempt is
    due again (see _next_attempt_due). None when there is nothing to claim,
    when the kill switch holds it, or when a lost attempt was the last one
    allowed (the action then fails).

    The new attempt sends the same Idempotency-Key, so when the lost one did
    reach the target, the target does not act twice.
    """
    action = _locked_or_none(action_id)
    if action is None or action.status != Status.DISPATCHING or _held(action):
        return None
    return _claim_next(action, ExecutionKind.DISPATCH)


def _claim_next(action: Action, kind: str) -> Execution | None:
    now = timezone.now()
    attempts = _round(action, kind)
    latest = attempts[0] if attempts else None
    if latest is None or not _next_attempt_due(latest, action.action_type, now):
        return None
    if latest.outcome == ExecutionOutcome.RUNNING and len(attempts) >= action.action_type.max_attempts:
        _end(action, latest, succeeded=False, response=None, error=f"{LOST} It was the last attempt allowed.")
        return None
    if latest.outcome == ExecutionOutcome.RUNNING:
        latest.outcome, latest.finished_at, latest.error = ExecutionOutcome.RETRYING, now, LOST
        latest.save(update_fields=["outcome", "finished_at", "error"])
    execution = Execution.objects.create(action=action, kind=kind, attempt=latest.attempt + 1)
    record(
        f"action.{kind}_retried",
        action,
        actor=Actor.system("dispatcher"),
        after={"attempt": execution.attempt, "previous_error": latest.error},
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    return execution


def _running(action: Action, execution_id: int, kind: str) -> Execution:
    """The attempt a worker is reporting on, locked; refused once it is over
    or superseded (a lost attempt that came back late is not recorded)."""
    execution = Execution.objects.select_for_update().get(pk=execution_id)
    if execution.action_id != action.pk or execution.kind != kind or execution.outcome != ExecutionOutcome.RUNNING:
        raise IllegalTransition(action.status, action.status, "This attempt is over or was superseded.")
    return execution


@transaction.atomic
def finish_dispatch(
    execution_id: int, *, succeeded: bool, response: Any = None, error: str = "", undo: Any = None
) -> Action:
    # The action first, then the attempt (in _running): the order every claim takes too.
    action = _locked(Execution.objects.values_list("action_id", flat=True).get(pk=execution_id))
    target = Status.SUCCEEDED if succeeded else Status.FAILED
    check_move(action.status, target)
    if action.status != Status.DISPATCHING:
        # approved -> succeeded is the agent's report, rollback_requested ->
        # succeeded a failed rollback: a late or repeated dispatch result is neither.
        raise IllegalTransition(action.status, target)
    _end(action, _running(action, execution_id, ExecutionKind.DISPATCH), succeeded, response, error, undo)
    return action


@transaction.atomic
def retry_later(execution_id: int, *, response: Any = None, error: str = "") -> Execution | None:
    """Record an attempt that may succeed later (5xx, time-out, no connection).
    Returns the attempt, with retry_at set, when another is allowed; else the
    dispatch fails (a rollback leaves the action in effect) and None."""
    kind, action_id = Execution.objects.values_list("kind", "action_id").get(pk=execution_id)
    action = _locked(action_id)  # the action first, then the attempt, as every claim does
    execution = _running(action, execution_id, kind)
    if len(_round(action, execution.kind)) >= action.action_type.max_attempts:
        _end(action, execution, False, response, f"{error} No attempts left ({action.action_type.max_attempts}).")
        return None
    now = timezone.now()
    execution.outcome, execution.finished_at = ExecutionOutcome.RETRYING, now
    execution.retry_at = now + executors.retry_delay(execution.attempt)
    execution.response, execution.error = response, error
    execution.save(update_fields=["outcome", "finished_at", "retry_at", "response", "error"])
    record(
        f"action.{execution.kind}_retry_scheduled",
        action,
        actor=Actor.system("dispatcher"),
        after={"attempt": execution.attempt, "error": error, "retry_at": execution.retry_at.isoformat()},
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    return execution


def _end(action: Action, execution: Execution, succeeded: bool, response: Any, error: str, undo: Any = None) -> None:
    """Finish the running attempt and move the action by its outcome."""
    _finish_execution(execution, succeeded, response, error, undo)
    if execution.kind == ExecutionKind.ROLLBACK:
        _move_by_rollback(action, succeeded, Actor.system("dispatcher"))
        return
    verb = "action.dispatch_succeeded" if succeeded else "action.dispatch_failed"
    _move(action, Status.SUCCEEDED if succeeded else Status.FAILED, verb, Actor.system("dispatcher"))
    breaker.count(action, succeeded=succeeded)


@transaction.atomic
def report_result(
    action_id: UUID | str, agent: Agent, *, succeeded: bool, detail: Any = None, undo: Any = None
) -> Action:
    """An agent reports the outcome of an action it executed itself, once its undo window is over."""
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
    if action.dispatch_after and action.dispatch_after > timezone.now():
        raise IllegalTransition(
            action.status, target, "This action is still in its undo window: a lead may veto it. Execute it after."
        )
    execution = Execution.objects.create(
        action=action, kind=ExecutionKind.DISPATCH, attempt=action.executions.count() + 1
    )
    error = "" if succeeded or detail is None else detail if isinstance(detail, str) else json.dumps(detail)
    _finish_execution(execution, succeeded, detail, error, undo)
    _move(action, target, "action.result_reported", Actor.agent(agent))
    breaker.count(action, succeeded=succeeded)
    return action


@transaction.atomic
def time_out_report(action_id: UUID | str) -> Action | None:
    """Fail an agent-executed action whose agent has not reported within the
    action type's report_timeout_minutes of its undo window's end. None when
    it is not (or no longer) due."""
    action = _locked_or_none(action_id)
    if action is None or action.status != Status.APPROVED or action.action_type.executor != Executor.AGENT:
        return None
    limit = timedelta(minutes=action.action_type.report_timeout_minutes)
    if (action.dispatch_after or action.decided_at or action.created_at) + limit > timezone.now():
        return None
    execution = Execution.objects.create(
        action=action, kind=ExecutionKind.DISPATCH, attempt=action.executions.count() + 1
    )
    error = f"The agent reported no result within {action.action_type.report_timeout_minutes} minutes."
    _finish_execution(execution, False, None, error, None)
    _move(action, Status.FAILED, "action.result_timed_out", Actor.system("sweeper"))
    breaker.count(action, succeeded=False)
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
    """A lead asks to undo a succeeded action within its reversal window.
    After commit a webhook action's rollback is called (roll_back_action); an
    agent-executed action's rollback is handed to its agent, which sees
    rollback_requested and reports how it went (report_rollback)."""
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
    if action.action_type.executor == Executor.AGENT:
        # The agent makes this attempt: running until it reports, or until the sweeper times it out.
        Execution.objects.create(action=action, kind=ExecutionKind.ROLLBACK, attempt=_next_rollback_number(action))
    else:
        from approvals import tasks  # see _route_after_commit

        action_pk = str(action.pk)
        transaction.on_commit(lambda: tasks.roll_back_action.delay(action_pk), robust=True)
    return action


def _next_rollback_number(action: Action) -> int:
    return action.executions.filter(kind=ExecutionKind.ROLLBACK).count() + 1


def undo_of(action: Action) -> Any:
    """What the target said a rollback needs: the `undo` of the dispatch that succeeded."""
    return (
        action.executions.filter(kind=ExecutionKind.DISPATCH, outcome=ExecutionOutcome.SUCCEEDED)
        .values_list("undo", flat=True)
        .last()
    )


@transaction.atomic
def start_rollback(action_id: UUID | str) -> Execution | None:
    """Claim an attempt at a webhook action's requested rollback: its first,
    or the next once the last is due again. None when there is none to claim.
    Rollbacks are not held by the kill switch: they stop an effect, not start one."""
    action = _locked_or_none(action_id)
    if action is None or action.status != Status.ROLLBACK_REQUESTED:
        return None
    if action.action_type.executor != Executor.WEBHOOK:
        return None
    if not _round(action, ExecutionKind.ROLLBACK):
        execution = Execution.objects.create(
            action=action, kind=ExecutionKind.ROLLBACK, attempt=_next_rollback_number(action)
        )
        record(
            "action.rollback_started",
            action,
            actor=Actor.system("dispatcher"),
            after={"attempt": execution.attempt},
            department_id=action.department_id,
            agent_id=action.agent_id,
        )
        return execution
    return _claim_next(action, ExecutionKind.ROLLBACK)


@transaction.atomic
def finish_rollback(
    action_id: UUID | str, *, succeeded: bool, response: Any = None, error: str = "", execution_id: int | None = None
) -> Action:
    """Record how a rollback went: rolled_back, or (failed) back to succeeded.
    With execution_id, that running attempt's outcome (a webhook call); else
    the running attempt's, or a new one's."""
    action = _locked(action_id)
    target = Status.ROLLED_BACK if succeeded else Status.SUCCEEDED
    check_move(action.status, target)
    if action.status != Status.ROLLBACK_REQUESTED:
        raise IllegalTransition(action.status, target)  # approved/dispatching -> succeeded are not rollbacks
    if execution_id is not None:
        execution = _running(action, execution_id, ExecutionKind.ROLLBACK)
    else:
        execution = _open_rollback(action)
    _end(action, execution, succeeded, response, error)
    return action


def _open_rollback(action: Action) -> Execution:
    running = action.executions.filter(kind=ExecutionKind.ROLLBACK, outcome=ExecutionOutcome.RUNNING).last()
    return running or Execution.objects.create(
        action=action, kind=ExecutionKind.ROLLBACK, attempt=_next_rollback_number(action)
    )


def _move_by_rollback(action: Action, succeeded: bool, actor: Actor) -> None:
    if succeeded:
        _move(action, Status.ROLLED_BACK, "action.rolled_back", actor)
    else:
        _move(action, Status.SUCCEEDED, "action.rollback_failed", actor)


@transaction.atomic
def report_rollback(action_id: UUID | str, agent: Agent, *, succeeded: bool, detail: Any = None) -> Action:
    """An agent reports how undoing an action it executed went."""
    action = _locked(action_id)
    if action.agent_id != agent.pk:
        raise Action.DoesNotExist
    target = Status.ROLLED_BACK if succeeded else Status.SUCCEEDED
    if action.status != Status.ROLLBACK_REQUESTED:
        raise IllegalTransition(action.status, target)
    if action.action_type.executor != Executor.AGENT:
        raise IllegalTransition(action.status, target, "The gateway rolls this action back; its agent does not.")
    error = "" if succeeded or detail is None else detail if isinstance(detail, str) else json.dumps(detail)
    _finish_execution(_open_rollback(action), succeeded, detail, error, None)
    _move_by_rollback(action, succeeded, Actor.agent(agent))
    return action


@transaction.atomic
def time_out_rollback(action_id: UUID | str) -> Action | None:
    """An agent that has not reported on a rollback within its action type's
    report_timeout_minutes: the rollback failed, the action stays in effect."""
    action = _locked_or_none(action_id)
    if action is None or action.status != Status.ROLLBACK_REQUESTED or action.action_type.executor != Executor.AGENT:
        return None
    running = action.executions.filter(kind=ExecutionKind.ROLLBACK, outcome=ExecutionOutcome.RUNNING).last()
    limit = timedelta(minutes=action.action_type.report_timeout_minutes)
    if running is None or running.started_at + limit > timezone.now():
        return None
    error = f"The agent reported no rollback result within {action.action_type.report_timeout_minutes} minutes."
    _finish_execution(running, False, None, error, None)
    _move(action, Status.SUCCEEDED, "action.rollback_timed_out", Actor.system("sweeper"))
    return action
