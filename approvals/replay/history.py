"""The recorded facts a replay needs, read in a few queries.

Only the grants a change can touch are read (one grant's, an action type's,
a department's), and of their actions only the columns the policy and the
counting use, streamed in (grant, created_at) order from the index that
the trust metrics use too. The leads' shadow marks come from a second,
small query over the shadowed rows' decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Case, CharField, Count, FloatField, Func, Q, QuerySet, Value, When
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone

from agents.models import Grant
from approvals.models import Action, Decision, DecisionVerdict, TierChange
from approvals.rules.lifecycle import Status
from approvals.rules.policy import GrantTerms


class Row(NamedTuple):
    """One recorded proposal, as the replay reads it: times as POSIX seconds."""

    grant_id: int
    at: float  # created_at
    verdict: str  # the policy's, when it was proposed
    code: str
    status: str  # what became of it
    amount: Decimal | None
    currency: str
    confidence: Decimal | None
    decided_at: float | None
    shadowed: str | None  # the id of a shadowed row, as text, else None
    marks_for: int  # its leads' "would approve" marks
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


class Seconds(Func):
    """A timestamp as POSIX seconds, in each backend's own words: read as a
    float, it skips the parsing of a datetime per row."""

    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float8")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)")


def rows(grant_ids: Iterable[int], since: datetime) -> Iterator[Row]:
    """The grants' recorded proposals from `since`, in (grant, created_at) order.

    The ORM writes the query; it runs on a plain cursor, so the rows come
    back as the driver reads them, without a converter per value."""
    ids = list(grant_ids)
    if not ids:
        return
    query = (
        Action.objects.filter(grant_id__in=ids, created_at__gte=since)
        .annotate(
            at=Seconds("created_at"),
            decided=Seconds("decided_at"),
            # As text: a UUID object per row costs more to read than the rest of the row.
            shadowed=Case(When(status=Status.SHADOWED, then=Cast("id", CharField()))),
            no_marks=Value(0),  # filled in below for the shadowed rows
        )
        .order_by("grant_id", "created_at")
        .values_list(
            "grant_id",
            "at",
            "verdict",
            "verdict_code",
            "status",
            "amount",
            "currency",
            "confidence",
            "decided",
            "shadowed",
            "no_marks",
            "no_marks",
        )
    )
    marks = _marks(ids, since)
    sql, params = query.query.sql_with_params()
    decimals = connection.vendor != "postgresql"  # SQLite hands numbers back as floats or ints
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(50_000):
            if decimals:
                batch = [_decimals(row) for row in batch]
            for row in map(Row._make, batch):
                yield row if row.shadowed is None else row._replace(**marks.get(row.shadowed, {}))


def counts_by_day(grant_ids: Iterable[int], since: datetime, until: datetime) -> list[tuple[int, date, str, str, int]]:
    """The grants' proposals in [since, until) counted by (grant, local day, verdict, status), in SQL:
    the part of the record a replay keeps as recorded (the policy window before the first replayed day)."""
    ids = list(grant_ids)
    if not ids or since >= until:
        return []
    rows = (
        Action.objects.filter(grant_id__in=ids, created_at__gte=since, created_at__lt=until)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("grant_id", "day", "verdict", "status")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("grant_id", "day", "verdict", "status", "n")
    )
    return list(rows)


def marks_by_day(grant_ids: Iterable[int], since: datetime, until: datetime) -> list[tuple[int, date, int, int]]:
    """The leads' marks on those proposals, by (grant, local day): (would approve, would reject)."""
    ids = list(grant_ids)
    if not ids or since >= until:
        return []
    rows = (
        Decision.objects.filter(
            action__grant_id__in=ids,
            action__created_at__gte=since,
            action__created_at__lt=until,
            action__status=Status.SHADOWED,
            verdict__in=(DecisionVerdict.WOULD_APPROVE, DecisionVerdict.WOULD_REJECT),
        )
        .annotate(day=TruncDate("action__created_at", tzinfo=timezone.get_current_timezone()))
        .values("action__grant_id", "day")
        .annotate(
            marks_for=Count("pk", filter=Q(verdict=DecisionVerdict.WOULD_APPROVE)),
            marks_against=Count("pk", filter=Q(verdict=DecisionVerdict.WOULD_REJECT)),
        )
        .order_by()
        .values_list("action__grant_id", "day", "marks_for", "marks_against")
    )
    return list(rows)


def _marks(grant_ids: list[int], since: datetime) -> dict[Any, dict[str, int]]:
    """The leads' marks on the grants' shadowed actions since `since`, by action id (as text)."""
    query = (
        Decision.objects.filter(
            action__grant_id__in=grant_ids,
            action__created_at__gte=since,
            action__status=Status.SHADOWED,
            verdict__in=(DecisionVerdict.WOULD_APPROVE, DecisionVerdict.WOULD_REJECT),
        )
        .values("action_id")
        .annotate(
            action=Cast("action_id", CharField()),
            marks_for=Count("pk", filter=Q(verdict=DecisionVerdict.WOULD_APPROVE)),
            marks_against=Count("pk", filter=Q(verdict=DecisionVerdict.WOULD_REJECT)),
        )
        .order_by()
        .values_list("action", "marks_for", "marks_against")
    )
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {action_id: {"marks_for": n, "marks_against": m} for action_id, n, m in cursor.fetchall()}


def _decimals(row: tuple[Any, ...]) -> tuple[Any, ...]:
    amount, confidence = row[5], row[7]
    return (
        *row[:5],
        None if amount is None else Decimal(str(amount)).quantize(CENTS),
        row[6],
        None if confidence is None else Decimal(str(confidence)).quantize(THOUSANDTHS),
        *row[8:],
    )


CENTS, THOUSANDTHS = Decimal("0.01"), Decimal("0.001")
