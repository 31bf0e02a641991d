"""The recorded facts a replay needs, read in a few queries.

Only the grants a change can touch are read (one grant's, an action type's,
a department's), and of their actions only the columns the policy and the
counting use, streamed in (grant, created_at) order from the index that
the trust metrics use too. The leads' shadow marks come from a second,
small query over the shadowed rows' decisions. The days a replay keeps as
recorded are counted per (grant, day, verdict, status) instead of read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Case, CharField, Count, FloatField, Func, Q, QuerySet, Value, When
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone

from agents.models import Grant
from approvals.models import Action, Decision, DecisionVerdict, TierChange, Verdict
from approvals.replay.tally import HUMAN_DECIDED
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


# A Row as the driver reads it: a plain tuple in Row's order (the replay's hot loop makes no Row of most).
RawRow = tuple[Any, ...]


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


@contextmanager
def reading() -> Iterator[None]:
    """One transaction for a replay's reads: one snapshot of the record. On PostgreSQL without
    JIT compilation, which costs about a tenth of a second per large query and gains nothing on
    these scans."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        yield


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
    for grant_id, at, from_tier, to_tier, reason, automatic, by in moves:
        by_id[grant_id].moves.append(RecordedMove(at, from_tier, to_tier, reason, automatic, by or ""))
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


# Which rows to read: (grants, since, until), until None for to the last row.
Span = tuple[Collection[int], datetime, datetime | None]


def _within(spans: Iterable[Span], prefix: str = "") -> Q | None:
    """The rows of any of the spans, as one condition (None if there are none)."""
    found: Q | None = None
    for grant_ids, since, until in spans:
        if not grant_ids:
            continue
        span = Q(**{f"{prefix}grant_id__in": list(grant_ids), f"{prefix}created_at__gte": since})
        if until is not None:
            span &= Q(**{f"{prefix}created_at__lt": until})
        found = span if found is None else found | span
    return found


def rows(spans: Iterable[Span]) -> Iterator[RawRow]:
    """The grants' recorded proposals in each span's [since, until), in (grant, created_at) order.

    The ORM writes the query; it runs on a plain cursor, so the rows come
    back as the driver reads them, without a converter per value."""
    spans = list(spans)
    window = _within(spans)
    if window is None:
        return
    query = (
        Action.objects.filter(window)
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
    marks = _marks(spans)
    sql, params = query.query.sql_with_params()
    decimals = connection.vendor != "postgresql"  # SQLite hands numbers back as floats or ints
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(50_000):
            if decimals:
                batch = [_decimals(row) for row in batch]
            for row in batch:
                shadowed = row[9]
                if shadowed is not None and shadowed in marks:
                    yield (*row[:10], *marks[shadowed])
                else:
                    yield row


def median_decision_seconds(grant_ids: Iterable[int], since: datetime) -> float | None:
    """The median time from proposal to a human's decision of the grants' proposals from `since`
    that waited for one (statistics.median's answer), in SQL: the middle one or two values."""
    ids = list(grant_ids)
    if not ids:
        return None
    waited = (
        Action.objects.filter(
            grant_id__in=ids,
            created_at__gte=since,
            verdict=Verdict.PENDING,
            decided_at__isnull=False,
            status__in=HUMAN_DECIDED,
        )
        .annotate(seconds=Seconds("decided_at") - Seconds("created_at"))
        .order_by()
    )
    n = waited.count()
    if not n:
        return None
    # The same subtraction of POSIX seconds the walk makes, read on a plain cursor as floats.
    middle = waited.order_by("seconds").values_list("seconds")[(n - 1) // 2 : (n - 1) // 2 + 2 - n % 2]
    sql, params = middle.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        values = [seconds for (seconds,) in cursor.fetchall()]
    return values[0] if n % 2 else (values[0] + values[1]) / 2


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


def _marks(spans: list[Span]) -> dict[str, tuple[int, int]]:
    """The leads' marks on the spans' shadowed actions, by action id (as text): (would approve, would reject)."""
    window = _within(spans, prefix="action__")
    if window is None:
        return {}
    query = (
        Decision.objects.filter(
            window,
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
        return {action_id: (n, m) for action_id, n, m in cursor.fetchall()}


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
