"""Trust metrics: how an agent's proposals fare with the humans who decide them.

The one source of truth for approval rates (agent pages, the department
dashboard, the action page and the trust evaluation). Every number is a
database aggregate over `Action` rows, grouped by grant, agent or department;
nothing walks rows in Python, so a million actions cost one scan of a window.

What counts, per action proposed in the window (docs/trust.md):

- a human approval: it waited for a human (policy verdict `pending`) and was
  approved, whatever happened to it after;
- against it: a human rejection, and a veto or a rollback of an action the
  policy auto-approved — the humans overruling the agent's autonomy;
- not a decision: actions still waiting, expired, cancelled or blocked, and
  auto-approved actions nobody overruled.

The shadow agreement rate of an observer grant counts the leads' marks on its
shadowed actions: "would approve" over all marks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Func, Q, QuerySet, Window
from django.db.models.functions import RowNumber, TruncDate
from django.utils import timezone

from approvals.models import Action, DecisionVerdict, PromotionPolicy, Verdict
from approvals.rules.lifecycle import Status
from approvals.rules.trust import Metrics, Rate

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

# Statuses of an action a human approved (and what may follow an approval).
APPROVED_AFTER = (
    Status.APPROVED,
    Status.DISPATCHING,
    Status.SUCCEEDED,
    Status.FAILED,
    Status.ROLLBACK_REQUESTED,
    Status.ROLLED_BACK,
)
ROLLED_BACK = (Status.ROLLBACK_REQUESTED, Status.ROLLED_BACK)

HUMAN_APPROVED = Q(verdict=Verdict.PENDING, status__in=APPROVED_AFTER)
HUMAN_REJECTED = Q(verdict=Verdict.PENDING, status=Status.REJECTED)
VETOED = Q(verdict=Verdict.APPROVED, status=Status.REJECTED)
AUTO_ROLLED_BACK = Q(verdict=Verdict.APPROVED, status__in=ROLLED_BACK)
DECIDED_BY_A_HUMAN = Q(verdict=Verdict.PENDING, status__in=(*APPROVED_AFTER, Status.REJECTED), decided_at__isnull=False)

SHADOW_VERDICTS = (DecisionVerdict.WOULD_APPROVE, DecisionVerdict.WOULD_REJECT)

GROUPS = {"grant": "grant_id", "agent": "agent_id", "department": "department_id"}


# ---------------------------------------------------------------- values


# ---------------------------------------------------------------- queries


def for_grants(window_starts: Mapping[int, datetime]) -> dict[int, Metrics]:
    """Metrics per grant id, each over its own window: from its start in
    `window_starts` (the policy's rolling window) or from the grant's last tier
    change, whichever is later: evidence earned at one tier does not carry
    over to the next. Grants without actions get empty Metrics."""
    by_start: dict[datetime, list[int]] = {}
    for grant_id, start in window_starts.items():
        by_start.setdefault(start, []).append(grant_id)
    found: dict[int, Metrics] = {}
    for start, grant_ids in by_start.items():
        scope = Action.objects.filter(grant_id__in=grant_ids, created_at__gte=start).filter(
            created_at__gte=F("grant__tier_changed_at")
        )
        found.update(_grouped(scope, "grant", start))
    return {grant_id: found.get(grant_id, Metrics(since=window_starts[grant_id])) for grant_id in window_starts}


def for_agents(agent_ids: Iterable[int], since: datetime, *, action_type_id: int | None = None) -> dict[int, Metrics]:
    """Metrics per agent id; with `action_type_id`, of its proposals of that type only."""
    ids = list(agent_ids)
    scope = Action.objects.filter(agent_id__in=ids, created_at__gte=since)
    if action_type_id is not None:
        scope = scope.filter(action_type_id=action_type_id)
    found = _grouped(scope, "agent", since)
    return {agent_id: found.get(agent_id, Metrics(since=since)) for agent_id in ids}


def for_agents_over_their_windows(
    agents: Iterable[tuple[int, int]],
    now: datetime,
    policy_of: Callable[[int | None], PromotionPolicy],
) -> dict[int, Metrics]:
    """(agent id, department id) pairs: each agent's record over its department's
    promotion-policy window, the window every page, the API and the detectors
    show and act on (the record's `since` says where it starts). `policy_of` is
    PromotionPolicy.by_department(), which the caller reads once for its own use too."""
    by_window: dict[int, list[int]] = {}
    for agent_id, department_id in agents:
        by_window.setdefault(policy_of(department_id).window_days, []).append(agent_id)
    records: dict[int, Metrics] = {}
    for days, agent_ids in by_window.items():
        records.update(for_agents(agent_ids, now - timedelta(days=days)))
    return records


def for_departments(department_ids: Iterable[int], since: datetime) -> dict[int, Metrics]:
    ids = list(department_ids)
    found = _grouped(Action.objects.filter(department_id__in=ids, created_at__gte=since), "department", since)
    return {department_id: found.get(department_id, Metrics(since=since)) for department_id in ids}


def _grouped(scope: QuerySet[Action], group: str, since: datetime) -> dict[int, Metrics]:
    key = GROUPS[group]
    counts = scope.values(key).annotate(
        proposals=Count("pk"),
        human_approved=Count("pk", filter=HUMAN_APPROVED),
        human_rejected=Count("pk", filter=HUMAN_REJECTED),
        vetoed=Count("pk", filter=VETOED),
        rolled_back=Count("pk", filter=AUTO_ROLLED_BACK),
        auto_approved=Count("pk", filter=Q(verdict=Verdict.APPROVED)),
    )
    rows: dict[int, dict[str, Any]] = {row.pop(key): row for row in counts.order_by()}
    for group_id, median in _medians(scope, key).items():
        rows.setdefault(group_id, {})["median_decision_seconds"] = median
    for group_id, marks in _shadow_marks(scope, key).items():
        rows.setdefault(group_id, {}).update(marks)
    return {group_id: Metrics(since=since, **values) for group_id, values in rows.items() if group_id is not None}


def _shadow_marks(scope: QuerySet[Action], key: str) -> dict[int, dict[str, int]]:
    """The leads' marks on the scope's shadowed actions: a join from those
    rows only, not a second pass over the whole scope."""
    marks = (
        scope.filter(status=Status.SHADOWED, decisions__verdict__in=SHADOW_VERDICTS)
        .values(key)
        .annotate(
            shadow_marks=Count("decisions"),
            shadow_would_approve=Count("decisions", filter=Q(decisions__verdict=DecisionVerdict.WOULD_APPROVE)),
        )
        .order_by()
    )
    return {row.pop(key): row for row in marks}


# ---------------------------------------------------------------- median time to decision


class SecondsToDecision(Func):
    """decided_at - created_at in seconds, in each backend's own words."""

    output_field = FloatField()

    def __init__(self) -> None:
        super().__init__(F("decided_at"), F("created_at"))

    # The parameter names are Django's (SQLiteNumericMixin.as_sqlite), so the overrides match it.
    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, Any]:
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM (%(expressions)s))", arg_joiner=" - ")

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, Any]:
        return self.as_sql(
            compiler, connection, template="((julianday(%(expressions)s)) * 86400.0)", arg_joiner=") - julianday("
        )


class Median(Aggregate):
    """PostgreSQL's exact median: percentile_cont(0.5), an ordered-set aggregate."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()
    allow_distinct = False


def _medians(scope: QuerySet[Action], key: str) -> dict[int, float]:
    decided = scope.filter(DECIDED_BY_A_HUMAN)
    if connection.vendor == "postgresql":
        rows = decided.values(key).annotate(median=Median(SecondsToDecision())).order_by()
        return {row[key]: row["median"] for row in rows}
    return _medians_by_rank(decided, key)


def _medians_by_rank(decided: QuerySet[Action], key: str) -> dict[int, float]:
    """Backends without percentile_cont (SQLite, the embedded default): rank
    each group's durations with window functions and keep only the middle one
    or two rows, so the database still does the sorting and at most two rows
    per group come back."""
    ranked = decided.annotate(
        group_id=F(key),
        seconds=SecondsToDecision(),
        rank=Window(RowNumber(), partition_by=[F(key)], order_by=SecondsToDecision().asc()),
        size=Window(Count("pk"), partition_by=[F(key)]),
    )
    # The middle of n rows: rank (n+1)/2 when n is odd, ranks n/2 and n/2+1 when even.
    middle = ranked.filter(rank__gte=F("size") / 2.0, rank__lte=F("size") / 2.0 + 1).values(
        "group_id", "seconds", "rank", "size"
    )
    picked: dict[int, list[float]] = {}
    for row in middle:
        if 2 * row["rank"] >= row["size"] and 2 * row["rank"] <= row["size"] + 2:
            picked.setdefault(row["group_id"], []).append(row["seconds"])
    return {group_id: sum(values) / len(values) for group_id, values in picked.items()}


# ---------------------------------------------------------------- per day


@dataclass(frozen=True)
class Day:
    day: date
    proposals: int = 0
    approved: int = 0
    against: int = 0  # rejections, vetoes and rollbacks of auto-approvals

    @property
    def approval(self) -> Rate:
        return Rate(self.approved, self.approved + self.against)


def daily(scope: QuerySet[Action], days: int, now: datetime | None = None) -> list[Day]:
    """The last `days` days (today included, in the site's time zone), every
    day present, counted by the day the action was proposed."""
    if days < 1:
        raise ValueError(f"A daily series needs at least one day, not {days}.")
    today = timezone.localdate(now or timezone.now())
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    rows = (
        scope.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(
            proposals=Count("pk"),
            approved=Count("pk", filter=HUMAN_APPROVED),
            against=Count("pk", filter=HUMAN_REJECTED | VETOED | AUTO_ROLLED_BACK),
        )
        .order_by()
    )
    found = {
        row["day"]: Day(row["day"], proposals=row["proposals"], approved=row["approved"], against=row["against"])
        for row in rows
    }
    series = (first + timedelta(days=n) for n in range(days))
    return [found.get(day, Day(day)) for day in series]
