"""What the periodic sweep finds: dispatches and rollbacks that should be
moving and are not.

A dispatch is enqueued once, after the approval commits; a message can still
be lost (the broker restarted before the worker took it) or its worker killed
mid-call (the message then waits for the broker's visibility timeout, an hour
on Redis). The sweep looks at the rows instead and re-queues, well within a
minute:

- approved webhook actions past their undo window (plus grace) that nobody
  claimed, unless the kill switch holds them;
- dispatching or rollback-requested webhook actions whose latest attempt is
  due again: a retry past its time, or an attempt without an outcome long
  after its time-out (approvals.services._next_attempt_due);
- rollback-requested webhook actions whose rollback never started.

It also routes waiting actions whose routing message was lost (the broker
was down as the proposal committed): pending or shadowed, `routed_at` still
empty, older than the grace.

Re-queuing is always safe: each run claims its attempt under the action's
lock, so an extra message finds nothing to do. Agent-executed actions past
their report deadline are failed here directly (a database move, no call).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery

from agents.models import AgentStatus
from approvals.models import Action, Execution, ExecutionKind, ExecutionOutcome, Executor, GatewayState
from approvals.rules.lifecycle import Status
from approvals.services import carry_out

if TYPE_CHECKING:
    # Type checking only: django-stubs' companion is a test requirement, not a runtime one.
    from django_stubs_ext import WithAnnotations

BATCH = 500  # per kind and run: a backlog drains over a few runs instead of one long one


def _grace() -> timedelta:
    return timedelta(seconds=settings.DISPATCH_GRACE_SECONDS)


def dispatches_to_requeue(now: datetime) -> list[str]:
    """Ids of webhook actions whose dispatch should be (re)started now."""
    if GatewayState.current().paused:
        return []  # held: the sweep after the resume finds them
    active = Action.objects.filter(action_type__executor=Executor.WEBHOOK, agent__status=AgentStatus.ACTIVE)
    unclaimed = active.filter(status=Status.APPROVED, dispatch_after__lte=now - _grace())
    stalled = _due_again(active.filter(status=Status.DISPATCHING), ExecutionKind.DISPATCH, now)
    return [str(pk) for pk in unclaimed.values_list("pk", flat=True)[:BATCH]] + stalled


def rollbacks_to_requeue(now: datetime) -> list[str]:
    """Ids of webhook actions whose requested rollback should be (re)started now."""
    requested = _with_latest(
        Action.objects.filter(status=Status.ROLLBACK_REQUESTED, action_type__executor=Executor.WEBHOOK),
        ExecutionKind.ROLLBACK,
    )
    # Its latest rollback attempt ended before this request (or there is none): the request's enqueue was lost.
    never_started = (
        requested.filter(updated_at__lte=now - _grace())
        .filter(
            Q(latest_outcome__isnull=True) | Q(latest_outcome__in=[ExecutionOutcome.SUCCEEDED, ExecutionOutcome.FAILED])
        )
        .values_list("pk", flat=True)
    )
    stalled = _due_again(requested, ExecutionKind.ROLLBACK, now)
    return [str(pk) for pk in never_started[:BATCH]] + stalled


def unrouted(now: datetime) -> list[str]:
    """Ids of waiting actions that should have been routed by now and were not, oldest first."""
    waiting = Action.objects.filter(
        status__in=[Status.PENDING, Status.SHADOWED], routed_at__isnull=True, created_at__lte=now - _grace()
    )
    return [str(pk) for pk in waiting.order_by("created_at").values_list("pk", flat=True)[:BATCH]]


class _Latest(TypedDict):
    """What _with_latest adds: all None for an action with no attempt of the kind."""

    latest_outcome: str | None
    latest_started_at: datetime | None
    latest_retry_at: datetime | None


def _with_latest(actions: QuerySet[Action], kind: str) -> QuerySet[WithAnnotations[Action, _Latest]]:
    """Annotated with their latest attempt of `kind`: outcome, start and retry time."""
    latest = Execution.objects.filter(action=OuterRef("pk"), kind=kind).order_by("-attempt")
    return actions.annotate(
        latest_outcome=Subquery(latest.values("outcome")[:1]),
        latest_started_at=Subquery(latest.values("started_at")[:1]),
        latest_retry_at=Subquery(latest.values("retry_at")[:1]),
    )


def _due_again(actions: QuerySet[Action], kind: str, now: datetime) -> list[str]:
    """Those of `actions` whose latest attempt of `kind` is due again: a retry
    past its time (plus grace), or a running attempt past its action type's
    time-out plus grace (approvals.services.carry_out.attempt_lost_after)."""
    grace = _grace()
    candidates = (
        _with_latest(actions, kind)
        .filter(
            Q(latest_outcome=ExecutionOutcome.RETRYING, latest_retry_at__lte=now - grace)
            # Coarse in the query (every time-out is at least 0 s), exact below per action type.
            | Q(latest_outcome=ExecutionOutcome.RUNNING, latest_started_at__lte=now - grace)
        )
        .select_related("action_type")
        .order_by("updated_at")[:BATCH]
    )
    return [
        str(action.pk)
        for action in candidates
        if action.latest_outcome == ExecutionOutcome.RETRYING
        # A running attempt (the filter above) always has its start.
        or (
            action.latest_started_at is not None
            and action.latest_started_at <= now - carry_out.attempt_lost_after(action.action_type)
        )
    ]


def reports_overdue(now: datetime) -> list[str]:
    """Agent-executed actions, or their rollbacks, whose agent may be past its report deadline.
    A superset (the exact deadline is per action type): carry_out.time_out_* check each one."""
    agent_executed = Action.objects.filter(action_type__executor=Executor.AGENT)
    # Report deadlines are at least a minute past their start.
    approved = agent_executed.filter(status=Status.APPROVED, dispatch_after__lte=now - timedelta(minutes=1))
    rolling_back = _with_latest(agent_executed.filter(status=Status.ROLLBACK_REQUESTED), ExecutionKind.ROLLBACK).filter(
        latest_outcome=ExecutionOutcome.RUNNING, latest_started_at__lte=now - timedelta(minutes=1)
    )
    return [
        *(str(pk) for pk in _past_deadline(approved, "dispatch_after", now)),
        *(str(pk) for pk in _past_deadline(rolling_back, "latest_started_at", now)),
    ]


def _past_deadline(actions: QuerySet[Action], start: str, now: datetime) -> list[object]:
    rows = actions.values_list("pk", start, "action_type__report_timeout_minutes").order_by(start)[:BATCH]
    return [pk for pk, started, minutes in rows if started + timedelta(minutes=minutes) <= now]


def time_out_reports(now: datetime) -> int:
    """Fail the agent-executed actions (and rollbacks) whose agent did not report in time; returns how many."""
    # Each re-checks its action under its lock: one reported meanwhile is left alone.
    return sum(
        bool(carry_out.time_out_report(action_id) or carry_out.time_out_rollback(action_id))
        for action_id in reports_overdue(now)
    )
