"""Hand-made rows for the monitoring tests: actions and dispatch attempts
written straight to their tables with the times, verdicts and context a
detector reads, as hours or days of traffic would leave them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from agents.models import Agent
from approvals.models import Action, ActionType, Execution, ExecutionKind
from tests.support.factories import ActionTypeFactory


def actions(
    agent: Agent,
    count: int,
    *,
    at: datetime | None = None,
    spread: timedelta = timedelta(0),
    status: str = "pending",
    verdict: str = "pending",
    action_type: ActionType | None = None,
    **fields: Any,
) -> list[Action]:
    """`count` actions of `agent`, proposed at `at` (default: a minute ago), evenly over `spread` before it."""
    end = at or timezone.now() - timedelta(minutes=1)
    step = spread / count if count else timedelta(0)
    action_type = action_type or ActionTypeFactory()
    rows = [
        Action(
            agent=agent,
            action_type=action_type,
            department=agent.department,
            status=status,
            verdict=verdict,
            reasoning="Hand-made for a monitoring test.",
            created_at=end - n * step,
            **fields,
        )
        for n in range(count)
    ]
    return Action.objects.bulk_create(rows)


def dispatch_attempts(agent: Agent, outcomes: list[str], *, finished_at: datetime | None = None) -> list[Execution]:
    """One dispatch attempt per outcome, each of its own action, finished at `finished_at` (default: now)."""
    finished = finished_at or timezone.now()
    carried = actions(agent, len(outcomes), status="failed", verdict="approved")
    return Execution.objects.bulk_create(
        Execution(action=action, kind=ExecutionKind.DISPATCH, attempt=1, outcome=outcome, finished_at=finished)
        for action, outcome in zip(carried, outcomes, strict=True)
    )
