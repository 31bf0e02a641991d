"""The core of every state change: lock the action, check the move against
approvals.rules.lifecycle, write it and its audit event, publish after commit.
Every module of approvals.services moves status through `move` here."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals import enqueue, live, reach
from approvals.dispatch import callbacks
from approvals.models import (
    Action,
    ActionType,
    Executor,
)
from approvals.rules import amounts, policy
from approvals.rules.lifecycle import IllegalTransition, Status, check_move
from audit.log import Actor, record
from audit.people import Person


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


class IdempotencyConflict(Exception):
    """The agent already used this idempotency key for a different proposal."""

    def __init__(self, earlier: Action) -> None:
        self.earlier = earlier
        super().__init__("This idempotency key was used for a different proposal.")


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


def undo_window_end(action_type: ActionType, approved_at: Any) -> Any:
    if action_type.reversible and action_type.undo_window_seconds:
        return approved_at + timedelta(seconds=action_type.undo_window_seconds)
    return approved_at


def locked(action_id: UUID | str) -> Action:
    # Lock the action row only: the joined agent and action type rows are
    # shared by every action of theirs and must not serialize all decisions.
    return Action.objects.select_for_update(of=("self",)).select_related("action_type", "agent").get(pk=action_id)


def move(
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
        after={"status": target, **{k: jsonable(v) for k, v in fields.items()}, **(note or {})},
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    callbacks.announce(action, verb)
    after_commit(action)


def jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, dict, list)) or value is None:
        return value
    return str(value)


def after_commit(action: Action) -> None:
    """Publish the change once it is committed (never a change that rolled back).
    Robust: the change has committed, so a channel layer that is down (Redis
    restarting) is logged, never turned into an error for the caller; screens
    that missed the push catch up when their socket reconnects."""
    action_id, department_id, status = action.pk, action.department_id, action.status
    transaction.on_commit(lambda: live.publish_action_changed(action_id, department_id, status), robust=True)
    if settings.SLACK_BOT_TOKEN:
        # Every message posted about it shows where it stands now, wherever it was decided (approvals.notify.slack).
        enqueue.delay_on_commit("update_slack_messages", str(action_id))


def locked_or_none(action_id: UUID | str) -> Action | None:
    return (
        Action.objects.select_for_update(of=("self",))
        .select_related("action_type", "agent")
        .filter(pk=action_id)
        .first()
    )


def dispatch_after_commit(action: Action) -> None:
    """Have an approved webhook action dispatched once this commits, when its
    undo window ends. Robust: should the enqueue be lost, the sweeper re-queues it."""
    if action.status != Status.APPROVED or action.action_type.executor != Executor.WEBHOOK:
        return
    enqueue.call_on_commit("enqueue_dispatch", str(action.pk), action.dispatch_after)


def check_decider(user: Person, action: Action, *, approving: bool) -> None:
    """Approve, reject, veto, shadow-mark and roll back all ask this; the
    owner is named only to say why."""
    if may_decide(user, action):
        return
    if action.agent.owner_id == user.pk:
        verb = "approve" if approving else "decide"
        raise DecisionRefused(f"You own this agent, so you may not {verb} its actions.")
    raise DecisionRefused("Only the leads of this action's department may decide it.")


def may_decide(user: Person, action: Action) -> bool:
    """approvals.reach's rule: the leads of the action's department, its
    backups once it has escalated, never the agent's owner."""
    return reach.reach_of(user).decides(action)
