"""Carrying an approved action out and rolling it back: dispatch attempts, the
agent's reports, time-outs, and rollbacks, each a move under the action's lock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from approvals import enqueue
from approvals.dispatch import breaker, executors
from approvals.models import (
    Action,
    ActionType,
    Execution,
    ExecutionKind,
    ExecutionOutcome,
    Executor,
    GatewayState,
)
from approvals.rules.lifecycle import IllegalTransition, Status, check_move
from approvals.services.moves import DecisionRefused, check_decider, locked, locked_or_none, move
from audit.log import Actor, record
from audit.people import Person


def _held(action: Action) -> bool:
    """The kill switch, read under the action's lock: a suspended agent's
    actions, and every action while the gateway is paused, do not start."""
    return not action.agent.is_active or GatewayState.current().paused


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
    action = locked_or_none(action_id)
    if action is None or action.status != Status.APPROVED:
        return None
    if action.dispatch_after and action.dispatch_after > timezone.now():
        return None
    if _held(action):
        return None
    attempt = action.executions.filter(kind=ExecutionKind.DISPATCH).count() + 1
    move(action, Status.DISPATCHING, "action.dispatch_started", Actor.system("dispatcher"))
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
    action = locked_or_none(action_id)
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
    action = locked(Execution.objects.values_list("action_id", flat=True).get(pk=execution_id))
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
    action = locked(action_id)  # the action first, then the attempt, as every claim does
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
    move(action, Status.SUCCEEDED if succeeded else Status.FAILED, verb, Actor.system("dispatcher"))
    breaker.count(action.agent_id, succeeded=succeeded, last=f"{action.action_type.slug} {action.pk}")


@transaction.atomic
def report_result(
    action_id: UUID | str, agent: Agent, *, succeeded: bool, detail: Any = None, undo: Any = None
) -> Action:
    """An agent reports the outcome of an action it executed itself, once its undo window is over."""
    action = locked(action_id)
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
    move(action, target, "action.result_reported", Actor.agent(agent))
    breaker.count(action.agent_id, succeeded=succeeded, last=f"{action.action_type.slug} {action.pk}")
    return action


@transaction.atomic
def time_out_report(action_id: UUID | str) -> Action | None:
    """Fail an agent-executed action whose agent has not reported within the
    action type's report_timeout_minutes of its undo window's end. None when
    it is not (or no longer) due."""
    action = locked_or_none(action_id)
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
    move(action, Status.FAILED, "action.result_timed_out", Actor.system("sweeper"))
    breaker.count(action.agent_id, succeeded=False, last=f"{action.action_type.slug} {action.pk}")
    return action


def _finish_execution(execution: Execution, succeeded: bool, response: Any, error: str, undo: Any) -> None:
    execution.outcome = ExecutionOutcome.SUCCEEDED if succeeded else ExecutionOutcome.FAILED
    execution.finished_at = timezone.now()
    execution.response = response
    execution.error = error
    execution.undo = undo
    execution.save(update_fields=["outcome", "finished_at", "response", "error", "undo"])


@transaction.atomic
def request_rollback(action_id: UUID | str, user: Person, *, reason: str) -> Action:
    """A lead asks to undo a succeeded action within its reversal window.
    After commit a webhook action's rollback is called (roll_back_action); an
    agent-executed action's rollback is handed to its agent, which sees
    rollback_requested and reports how it went (report_rollback)."""
    action = locked(action_id)
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
    check_decider(user, action, approving=False)
    move(action, Status.ROLLBACK_REQUESTED, "action.rollback_requested", Actor.user(user), note={"reason": reason})
    if action.action_type.executor == Executor.AGENT:
        # The agent makes this attempt: running until it reports, or until the sweeper times it out.
        Execution.objects.create(action=action, kind=ExecutionKind.ROLLBACK, attempt=_next_rollback_number(action))
    else:
        enqueue.delay_on_commit("roll_back_action", str(action.pk))
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
    action = locked_or_none(action_id)
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
    action = locked(action_id)
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
        move(action, Status.ROLLED_BACK, "action.rolled_back", actor)
    else:
        move(action, Status.SUCCEEDED, "action.rollback_failed", actor)


@transaction.atomic
def report_rollback(action_id: UUID | str, agent: Agent, *, succeeded: bool, detail: Any = None) -> Action:
    """An agent reports how undoing an action it executed went."""
    action = locked(action_id)
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
    action = locked_or_none(action_id)
    if action is None or action.status != Status.ROLLBACK_REQUESTED or action.action_type.executor != Executor.AGENT:
        return None
    running = action.executions.filter(kind=ExecutionKind.ROLLBACK, outcome=ExecutionOutcome.RUNNING).last()
    limit = timedelta(minutes=action.action_type.report_timeout_minutes)
    if running is None or running.started_at + limit > timezone.now():
        return None
    error = f"The agent reported no rollback result within {action.action_type.report_timeout_minutes} minutes."
    _finish_execution(running, False, None, error, None)
    move(action, Status.SUCCEEDED, "action.rollback_timed_out", Actor.system("sweeper"))
    return action
