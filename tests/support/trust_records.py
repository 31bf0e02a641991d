"""Hand-made action records for the trust tests: rows written straight to the
table with the status, verdict and times a test needs, as months of use would
leave them (the lifecycle itself is tested elsewhere)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from agents.models import Grant
from approvals.models import Action, Decision


def actions(
    grant: Grant,
    count: int,
    *,
    status: str,
    verdict: str = "pending",
    created_at: datetime | None = None,
    decided_after: timedelta | None = timedelta(minutes=5),
    department: Any = None,
    version: str | None = None,
) -> list[Action]:
    """`count` actions of the grant; decided `decided_after` after their proposal when they were decided."""
    created = created_at or timezone.now() - timedelta(hours=1)
    undecided = status in ("pending", "expired", "cancelled", "blocked", "shadowed")
    rows = [
        Action(
            agent=grant.agent,
            action_type=grant.action_type,
            grant=grant,
            department=department or grant.agent.department,
            status=status,
            verdict=verdict,
            reasoning="Hand-made for a trust test.",
            context={"agent_version": version} if version else {},
            created_at=created,
            decided_at=None if undecided or decided_after is None else created + decided_after,
        )
        for _ in range(count)
    ]
    return Action.objects.bulk_create(rows)


def approvals(grant: Grant, count: int, **fields: Any) -> list[Action]:
    return actions(grant, count, status="succeeded", **fields)


def rejections(grant: Grant, count: int, **fields: Any) -> list[Action]:
    return actions(grant, count, status="rejected", **fields)


def shadow_marks(grant: Grant, user: Any, would_approve: int, would_reject: int) -> None:
    shadowed = actions(grant, would_approve + would_reject, status="shadowed", verdict="shadowed")
    Decision.objects.bulk_create(
        Decision(action=action, user=user, verdict="would_approve" if n < would_approve else "would_reject")
        for n, action in enumerate(shadowed)
    )
