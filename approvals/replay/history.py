"""The recorded facts a replay needs, read in a few queries.

Only the grants a change can touch are read (one grant's, an action type's,
a department's), and of their actions only the columns the policy and the
counting use, streamed in (grant, created_at) order from the index that
the trust metrics use too. The leads' shadow marks come in the same pass:
a count per shadowed row, evaluated only for those rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from django.db.models import Case, Count, IntegerField, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce

from agents.models import Grant
from approvals.models import Action, Decision, DecisionVerdict, TierChange
from approvals.rules.lifecycle import Status
from approvals.rules.policy import GrantTerms


class Row(NamedTuple):
    """One recorded proposal, as the replay reads it."""

    grant_id: int
    created_at: datetime
    verdict: str  # the policy's, when it was proposed
    code: str
    status: str  # what became of it
    amount: Decimal | None
    currency: str
    confidence: Decimal | None
    decided_at: datetime | None
    marks_for: int  # the leads' "would approve" marks, on a shadowed row
    marks_against: int


class RecordedMove(NamedTuple):
    at: datetime
    from_tier: str
    to_tier: str
    reason: str
    automatic: bool
    by: str


@dataclass
class GrantFacts:
    """A grant as it stands, and its tier history."""

    id: int
    agent_slug: str
    agent_status: str
    department_id: int
    action_type_id: int
    action_type_slug: str
    tier: str
    terms: GrantTerms
    tier_changed_at: datetime
    created_at: datetime
    moves: list[RecordedMove] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.agent_slug} → {self.action_type_slug}"


def grants(scope: QuerySet[Grant]) -> list[GrantFacts]:
    chosen = [
        GrantFacts(
            id=g.pk,
            agent_slug=g.agent.slug,
            agent_status=g.agent.status,
            department_id=g.agent.department_id,
            action_type_id=g.action_type_id,
            action_type_slug=g.action_type.slug,
            tier=g.tier,
            terms=terms_of(g),
            tier_changed_at=g.tier_changed_at,
            created_at=g.created_at,
        )
        for g in scope.select_related("agent", "action_type").order_by("pk")
    ]
    by_id = {g.id: g for g in chosen}
    moves = (
        TierChange.objects.filter(grant_id__in=by_id)
        .order_by("created_at", "id")
        .values_list("grant_id", "created_at", "from_tier", "to_tier", "reason", "automatic", "changed_by__username")
    )
    for grant_id, *move in moves:
        by_id[grant_id].moves.append(RecordedMove(*move[:5], by=move[5] or ""))
    return chosen


def terms_of(grant: Grant) -> GrantTerms:
    """The grant's terms as the policy reads them (as approvals.services.proposals hands them over)."""
    return GrantTerms(
        tier=grant.tier,
        max_amount_per_action=grant.max_amount_per_action,
        max_actions_per_day=grant.max_actions_per_day,
        max_amount_per_day=grant.max_amount_per_day,
        auto_approve_max_amount=grant.auto_approve_max_amount,
        min_confidence=grant.min_confidence,
    )


def _marks(verdict: str) -> Case:
    counted = (
        Decision.objects.filter(action_id=OuterRef("pk"), verdict=verdict)
        .order_by()
        .values("action_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    # CASE: the subquery runs for shadowed rows only.
    return Case(
        When(status=Status.SHADOWED, then=Coalesce(Subquery(counted, output_field=IntegerField()), 0)),
        default=0,
        output_field=IntegerField(),
    )


def rows(grant_ids: Iterable[int], since: datetime) -> Iterator[Row]:
    """The grants' recorded proposals from `since`, in (grant, created_at) order, streamed."""
    ids = list(grant_ids)
    if not ids:
        return iter(())
    query = (
        Action.objects.filter(Q(grant_id__in=ids), created_at__gte=since)
        .annotate(
            marks_for=_marks(DecisionVerdict.WOULD_APPROVE),
            marks_against=_marks(DecisionVerdict.WOULD_REJECT),
        )
        .order_by("grant_id", "created_at")
        .values_list(
            "grant_id",
            "created_at",
            "verdict",
            "verdict_code",
            "status",
            "amount",
            "currency",
            "confidence",
            "decided_at",
            "marks_for",
            "marks_against",
        )
    )
    return (Row._make(values) for values in query.iterator(chunk_size=20_000))
