"""The recorded facts a replay needs, read in a few queries.

Only the grants a change can touch are read (one grant's, an action type's,
a department's), and of their actions only the columns the policy and the
counting use, streamed in (grant, created_at) order from the index that
the trust metrics use too. The leads' shadow marks come from a second,
small query over the shadowed rows' decisions. The days a replay keeps as
recorded are counted per (grant, day, verdict, status) instead of read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import psycopg
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast, Round, TruncDate
from django.utils import timezone

from agents.models import Grant
from approvals.autonomy.metrics import APPROVED_AFTER
from approvals.models import Action, Decision, DecisionVerdict, TierChange, Verdict
from approvals.rules.lifecycle import Status
from approvals.rules.policy import GrantTerms


class Row(NamedTuple):
    """One recorded proposal, as the replay reads it: times as POSIX seconds, the amount and the
    confidence as whole numbers of their last decimal place (see scaled)."""

    grant_id: int
    at: float  # created_at
    verdict: str  # the policy's, when it was proposed
    code: str
    status: str  # what became of it
    cents: int | None  # the amount
    currency: str
    thousandths: int | None  # the confidence
    decided_at: float | None
    shadowed: str | None  # the id of a shadowed row, as text, else None
    marks_for: int  # its leads' "would approve" marks
    marks_against: int


# A Row as the driver reads it: a plain tuple in Row's order (the replay's hot loop makes no Row of most),
# read by these positions.
RawRow = tuple[Any, ...]
AT, VERDICT, CODE, STATUS, CENTS, THOUSANDTHS, DECIDED_AT, MARKS_FOR, MARKS_AGAINST = map(
    Row._fields.index,
    ("at", "verdict", "code", "status", "cents", "thousandths", "decided_at", "marks_for", "marks_against"),
)

# An amount in cents and a confidence in thousandths: whole numbers, read and compared a million
# times faster than Decimals, and exact, as the columns hold no finer digit.
AMOUNT_PLACES = Action._meta.get_field("amount").decimal_places
CONFIDENCE_PLACES = Action._meta.get_field("confidence").decimal_places


def scaled(value: Decimal | None, places: int) -> int | Decimal | None:
    """A limit in the rows' units: a whole number of cents (or thousandths) when it is one, as a
    valid grant's limits are; else the Decimal itself, which compares with them exactly all the same."""
    if value is None:
        return None
    units = value.scaleb(places)
    return int(units) if units == units.to_integral_value() else units


def unscaled(units: int | None, places: int) -> Decimal | None:
    """A value read in the rows' units, as the Decimal the column holds."""
    return None if units is None else Decimal(units).scaleb(-places)


T = TypeVar("T")

# The statuses a human's decision leaves: the ones a time to decision is measured on.
HUMAN_DECIDED = frozenset((*APPROVED_AFTER, Status.REJECTED))


# The leads' marks on one shadowed proposal: its grant, when it was proposed (POSIX seconds), and
# how many would have approved it, how many rejected it.
Marks = tuple[int, float, int, int]


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
    """One transaction for a replay's reads. On PostgreSQL, without JIT compilation, which costs
    about a tenth of a second per large query and gains nothing on these scans, and with room to
    count a fleet's month of proposals by day in memory (about 40 MB for a million: at the
    default 4 MB, the counting spills to disk)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
                cursor.execute("SET LOCAL work_mem = '64MB'")
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
        # date_part answers a float8 itself; EXTRACT (a numeric since PostgreSQL 14) works in numeric
        # and is cast after: the same value (each the exact one, rounded once), for more of the server's time.
        return self.as_sql(compiler, connection, template="date_part('epoch', %(expressions)s)")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)")


# Which rows to read: (grants, since, until), until None for to the last row.
Span = tuple[Collection[int], datetime, datetime | None]


def _within(spans: Iterable[Span]) -> Q | None:
    """The rows of any of the spans, as one condition (None if there are none)."""
    found: Q | None = None
    for grant_ids, since, until in spans:
        if not grant_ids:
            continue
        span = Q(grant_id__in=list(grant_ids), created_at__gte=since)
        if until is not None:
            span &= Q(created_at__lt=until)
        found = span if found is None else found | span
    return found


@contextmanager
def rows(spans: Iterable[Span], marks: dict[str, Marks]) -> Iterator[Iterator[RawRow]]:
    """The grants' recorded proposals in each span's [since, until), in (grant, created_at) order,
    each shadowed one with its leads' `marks` (read by `marks`): `with rows(…) as found`.

    The ORM writes the query; it runs on a plain cursor, so the rows come
    back as the driver reads them, without a converter per value. They stream
    (_streamed_in_index_order) for as long as the block lasts: leaving it,
    even by an error, ends the query, which would otherwise keep the
    connection busy and the transaction's end waiting on it."""
    spans = list(spans)
    window = _within(spans)
    if window is None:
        yield iter(())
        return
    query = (
        Action.objects.filter(window)
        .annotate(
            at=Seconds("created_at"),
            decided=Seconds("decided_at"),
            cents=Cast(Round(F("amount") * 10**AMOUNT_PLACES), BigIntegerField()),
            thousandths=Cast(Round(F("confidence") * 10**CONFIDENCE_PLACES), IntegerField()),
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
            "cents",
            "currency",
            "thousandths",
            "decided",
            "shadowed",
            "no_marks",
            "no_marks",
        )
    )
    streamed = _streamed_in_index_order(query)

    def with_marks() -> Iterator[RawRow]:
        for row in streamed:
            shadowed = row[9]
            if shadowed is not None and shadowed in marks:
                yield (*row[:10], *marks[shadowed][2:])
            else:
                yield row

    try:
        yield with_marks()
    finally:
        streamed.close()


def _streamed_in_index_order(query: QuerySet[Any]) -> Generator[RawRow, None, None]:
    """The rows of a query ordered as an index keeps them, handed over as they come.

    On PostgreSQL they come from the index, in chunks, from the first one on: the
    caller walks them while the server reads the next. Costing the whole result, the
    planner would rather read every row, sort them all and only then send the first
    (a second and more for a fleet's month, with the walk waiting); so, for this query
    only, it is told not to sort and not to split the scan among workers (the second
    core walks)."""
    if connection.vendor != "postgresql":
        for batch in _batches(query):
            yield from batch
        return
    sql, params = query.query.sql_with_params()
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        before = cursor.execute(_PLAN_SETTINGS_NOW).fetchone()
        cursor.execute(_SET_PLAN_SETTINGS, ("off", "0"))
        yield from cursor.stream(sql, params, binary=True, size=STREAMED_CHUNK)
        # Not on an error: the replay's transaction (or savepoint) is rolled back then, and they with it.
        cursor.execute(_SET_PLAN_SETTINGS, before)


_PLAN_SETTINGS_NOW = "SELECT current_setting('enable_sort'), current_setting('max_parallel_workers_per_gather')"
# For the transaction only, as SET LOCAL.
_SET_PLAN_SETTINGS = (
    "SELECT set_config('enable_sort', %s, true), set_config('max_parallel_workers_per_gather', %s, true)"
)
STREAMED_CHUNK = 5_000


def _batches(query: QuerySet[Any]) -> Iterator[list[RawRow]]:
    """The query's rows, in batches, as the driver reads them: no converter per value. On
    PostgreSQL in binary, which spares parsing each number from its text (a third of the time
    spent reading the rows)."""
    sql, params = query.query.sql_with_params()
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        # Django's cursors bind values on the client, which reads only text: this one binds on the server.
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, binary=True)
            while batch := cursor.fetchmany(BATCH):
                yield batch
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(BATCH):
            yield batch


BATCH = 50_000


def median_decision_seconds(grant_ids: Iterable[int], since: datetime) -> float | None:
    """The median time from proposal to a human's decision of the grants' proposals from `since`
    that waited for one (statistics.median's answer), in SQL: the middle one or two values, found
    in one pass over the proposals (the times, kept once, are counted and then sorted)."""
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
        # The same subtraction of POSIX seconds the walk makes, read on a plain cursor as floats.
        .annotate(seconds=Seconds("decided_at") - Seconds("created_at"))
        .order_by()
        .values_list("seconds")
    )
    sql, params = waited.query.sql_with_params()
    # The ORM's query, its values passed apart; the one or two middle values of its times.
    middle = (
        f"WITH waited AS ({sql}), n AS (SELECT COUNT(*) AS n FROM waited) "  # noqa: S608
        "SELECT seconds FROM waited ORDER BY seconds "
        "LIMIT (SELECT 2 - n %% 2 FROM n) OFFSET (SELECT (n - 1) / 2 FROM n)"
    )
    with connection.cursor() as cursor:
        cursor.execute(middle, params)
        values = [seconds for (seconds,) in cursor.fetchall()]
    if not values:
        return None
    return values[0] if len(values) == 1 else (values[0] + values[1]) / 2


def meanwhile(read: Callable[[list[int], datetime], T], grant_ids: Iterable[int], since: datetime) -> Callable[[], T]:
    """`read(grant_ids, since)`, started now and answered when asked (the call returned waits for
    it, read once however often it is called).

    On PostgreSQL, when the replay's reads are the outermost transaction (what they read is
    committed, for any connection to see), it runs on a connection of its own, in a thread, so
    that the server reads it while the replay reads or walks other rows: the second of two
    cores, else idle. Inside a caller's transaction (a test's), it runs when asked, on the
    replay's connection."""
    ids = list(grant_ids)
    if connection.vendor != "postgresql" or not connection.in_atomic_block or connection.savepoint_ids:
        return functools.cache(lambda: read(ids, since))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-read")
    found = pool.submit(_on_a_connection_of_its_own, read, ids, since)
    pool.shutdown(wait=False)
    return found.result


def _on_a_connection_of_its_own(read: Callable[[list[int], datetime], T], grant_ids: list[int], since: datetime) -> T:
    try:
        with reading():
            return read(grant_ids, since)
    finally:
        connection.close()  # this thread's, back to the pool


def counts_by_day(grant_ids: Iterable[int], since: datetime, until: datetime) -> list[tuple[int, date, str, str, int]]:
    """The grants' proposals in [since, until) counted by (grant, local day, verdict, status), in SQL:
    the part of the record a replay keeps as recorded."""
    ids = list(grant_ids)
    if not ids or since >= until:
        return []
    groups = (
        Action.objects.filter(grant_id__in=ids, created_at__gte=since, created_at__lt=until)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("grant_id", "day", "verdict", "status")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("grant_id", "day", "verdict", "status", "n")
    )
    return list(groups)


def marks(grant_ids: Iterable[int], since: datetime) -> dict[str, Marks]:
    """The leads' marks on the grants' shadowed proposals from `since` on, by action id (as text):
    read once, for the days counted in SQL (summed by day) and for the rows read."""
    ids = list(grant_ids)
    if not ids:
        return {}
    query = (
        Decision.objects.filter(
            action__grant_id__in=ids,
            action__created_at__gte=since,
            action__status=Status.SHADOWED,
            verdict__in=(DecisionVerdict.WOULD_APPROVE, DecisionVerdict.WOULD_REJECT),
        )
        .values("action_id", "action__grant_id")
        .annotate(
            action_text=Cast("action_id", CharField()),
            at=Seconds("action__created_at"),
            marks_for=Count("pk", filter=Q(verdict=DecisionVerdict.WOULD_APPROVE)),
            marks_against=Count("pk", filter=Q(verdict=DecisionVerdict.WOULD_REJECT)),
        )
        .order_by()
        .values_list("action_text", "action__grant_id", "at", "marks_for", "marks_against")
    )
    return {row[0]: row[1:] for batch in _batches(query) for row in batch}
