"""What a lead sees: the reads behind /queue/, its htmx partials, the live
socket and the action page, so all of them agree on who sees what and in
which order.

Which actions a queue holds is approvals.reach's rule (`queue_q`): the
departments the user leads, and those they back up once an action has
escalated. Changes go through approvals.services, never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from django.core.paginator import Page, Paginator
from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from approvals.autonomy import metrics
from approvals.autonomy.metrics import Rate
from approvals.models import APPROVING, Action, Decision, DecisionVerdict, PromotionPolicy, Verdict
from approvals.reach import Reach, queue_q
from approvals.reads import queue_filters
from approvals.rules.lifecycle import Status
from audit.people import Person

PAGE_SIZE = 50
# The "recently auto-approved" section lists at most this many: undo windows
# are short, so more than a screenful means something else is wrong.
VETO_LIMIT = 20
HISTORY_LIMIT = 10

HUMAN_VERDICTS = (*APPROVING, DecisionVerdict.REJECT, DecisionVerdict.VETO)

IS_ESCALATED = ExpressionWrapper(Q(escalated_at__isnull=False), output_field=BooleanField())
# The queue's order, most urgent first (see queue_for).
URGENCY = ("-is_escalated", "-priority", F("sla_deadline").asc(nulls_last=True), "created_at", "pk")

# Where a visible action sits on the queue page: the pending table, the
# shadow lane or the "recently auto-approved" (vetoable) section.
Place = Literal["pending", "shadow", "veto"]
Lane = Literal["pending", "shadow"]
LANES: tuple[Lane, ...] = ("pending", "shadow")
PLACES_BY_LANE: dict[Lane, tuple[Place, ...]] = {"pending": ("pending", "veto"), "shadow": ("shadow",)}


def visible_to(user: Person, reach: Reach | None = None) -> Q:
    """The queue's visibility: approvals.reach.queue_q, the one rule."""
    return queue_q(user, reach)


def _annotated(user: Person, reach: Reach | None = None) -> QuerySet[Action]:
    """Visible actions with what a row shows about this user's part in them."""
    mine = Decision.objects.filter(action=OuterRef("pk"), user=user)
    # A correlated count, not Count() over a join: a GROUP BY would make the
    # database aggregate every pending row before it can sort and cut a page.
    # Only the approvals of the standing payload count: the latest approval's
    # digest is its digest (an edit replaces it and restarts the count).
    standing = (
        Decision.objects.filter(action=OuterRef(OuterRef("pk")), verdict__in=APPROVING)
        .order_by("-created_at", "-pk")
        .values("payload_digest")[:1]
    )
    approvals = (
        Decision.objects.filter(action=OuterRef("pk"), verdict__in=APPROVING, payload_digest=Subquery(standing))
        .order_by()
        .values("action")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        Action.objects.filter(visible_to(user, reach))
        .select_related("agent", "action_type")
        .annotate(
            is_escalated=IS_ESCALATED,
            approvals=Coalesce(Subquery(approvals), 0),
            approved_by_me=Exists(mine.filter(verdict__in=APPROVING, payload_digest=Subquery(standing))),
            my_mark=Subquery(mine.values("verdict")[:1]),
        )
    )


def queue_for(user: Person, reach: Reach | None = None) -> QuerySet[Action]:
    """Pending actions the user decides, most urgent first: escalated, then
    higher priority, then the nearer SLA deadline, then the older. The last
    key (id) makes the order total, so pages never overlap. The order is
    the one of Action.Meta's action_pending_queue_idx: keep them alike."""
    return _annotated(user, reach).filter(status=Status.PENDING).order_by(*URGENCY)


def shadow_lane_for(user: Person, reach: Reach | None = None) -> QuerySet[Action]:
    """Observer-tier proposals, newest first: evidence for promotion, never executed."""
    return _annotated(user, reach).filter(status=Status.SHADOWED).order_by("-created_at", "pk")


def vetoable_for(user: Person, now: datetime | None = None, reach: Reach | None = None) -> QuerySet[Action]:
    """Auto-approved actions still inside their undo window, closest to dispatch first."""
    return (
        _annotated(user, reach)
        .filter(status=Status.APPROVED, verdict=Verdict.APPROVED, dispatch_after__gt=now or timezone.now())
        .order_by("dispatch_after", "pk")
    )


def find_for(user: Person, action_id: UUID | str) -> Action | None:
    """One visible action with the row annotations, or None."""
    # No .first(): its ORDER BY and LIMIT are wasted on a primary key.
    return next(iter(_annotated(user).filter(pk=action_id).order_by()), None)


def place_of(action: Action, now: datetime | None = None) -> Place | None:
    """Where a visible action shows on the queue page; None when nowhere."""
    if action.status == Status.PENDING:
        return "pending"
    if action.status == Status.SHADOWED:
        return "shadow"
    now = now or timezone.now()
    if action.status == Status.APPROVED and action.verdict == Verdict.APPROVED and action.dispatch_after:
        return "veto" if action.dispatch_after > now else None
    return None


def lane_from(value: str | None) -> Lane:
    return "shadow" if value == "shadow" else "pending"


@dataclass(frozen=True)
class QueueCounts:
    pending: int
    escalated: int
    overdue: int
    shadowed: int
    due_soon: int = 0  # within queue_filters.DUE_SOON of its SLA deadline

    @property
    def on_time(self) -> int:
        """Neither overdue nor due soon (or no deadline): the rest of the pending."""
        return self.pending - self.overdue - self.due_soon


def counts_for(user: Person, now: datetime | None = None, reach: Reach | None = None) -> QueueCounts:
    """The counters over the queue. Two counts, one per status, rather than
    one over both: each is then an index-only scan (the pending index has
    every column the pending counters read), several times faster on a long
    queue than one pass over the rows of both."""
    now = now or timezone.now()
    visible = Action.objects.filter(visible_to(user, reach))
    pending = visible.filter(status=Status.PENDING).aggregate(
        pending=Count("pk"),
        escalated=Count("pk", filter=Q(escalated_at__isnull=False)),
        overdue=Count("pk", filter=Q(sla_deadline__lt=now)),
        due_soon=Count("pk", filter=Q(sla_deadline__gte=now, sla_deadline__lt=now + queue_filters.DUE_SOON)),
    )
    return QueueCounts(**pending, shadowed=visible.filter(status=Status.SHADOWED).count())


class _Lane:
    """A lane's rows as the Paginator sees them: a count already read (the
    counters have it) and slices cut on ids first. The window of ids is a
    narrow walk of the index in queue order; only its rows get joined and
    annotated, not the thousands the offset skips."""

    def __init__(self, rows: QuerySet[Action], count: int) -> None:
        self.rows, self._count = rows, count

    def count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, window: slice) -> QuerySet[Action]:
        ids = self.rows.values("pk")[window]
        return self.rows.filter(pk__in=ids)


def page_of(
    user: Person,
    lane: Lane,
    number: Any,
    reach: Reach,
    counts: QueueCounts,
    filters: queue_filters.Filters | None = None,
    now: datetime | None = None,
) -> Page:
    """One page of a lane (a bad or past-the-end number gives the nearest
    page), narrowed and sorted by the lead's filters (approvals.reads.queue_filters)."""
    if lane == "pending":
        rows, count = queue_for(user, reach), counts.pending
    else:
        rows, count = shadow_lane_for(user, reach), counts.shadowed
    if filters is not None:
        rows = queue_filters.apply(rows, filters, now or timezone.now())
        if filters.q:
            # A search reads every row's text: read the matching ids once, in
            # order, and page through them, rather than scan again to count.
            found = list(rows.values_list("pk", flat=True)[: queue_filters.SEARCH_LIMIT])
            return _page(_Found(rows, found), number)
        if filters.active:
            count = rows.order_by().count()
    return _page(_Lane(rows, count), number)


def _page(lane: _Lane, number: Any) -> Page:
    # Paginator only counts its object list and slices it (Paginator.page); the stubs' protocol
    # also asks for iteration and integer indexing, which a lane never gets.
    return Paginator(lane, PAGE_SIZE).get_page(number)  # type: ignore[arg-type]


class _Found(_Lane):
    """A searched lane: the matching ids, read once, at most queue_filters.SEARCH_LIMIT."""

    def __init__(self, rows: QuerySet[Action], ids: list[Any]) -> None:
        super().__init__(rows, len(ids))
        self.ids = ids

    def __getitem__(self, window: slice) -> QuerySet[Action]:
        return self.rows.filter(pk__in=self.ids[window])


# ---------------------------------------------------------------- the action page


def decisions_of(action: Action) -> QuerySet[Decision]:
    return action.decisions.select_related("user").order_by("created_at")


def recent_history(action: Action, limit: int = HISTORY_LIMIT) -> list[Action]:
    """The agent's latest other proposals, of any type: what it has been up to."""
    return list(
        Action.objects.filter(agent_id=action.agent_id)
        .exclude(pk=action.pk)
        .select_related("action_type")
        .order_by("-created_at")[:limit]
    )


@dataclass(frozen=True)
class ApprovalRate:
    rate: Rate
    window_days: int

    @property
    def approved(self) -> int:
        return self.rate.successes

    @property
    def decided(self) -> int:
        return self.rate.trials

    @property
    def percent(self) -> int | None:
        value = self.rate.value  # None without trials
        return round(100 * value) if value is not None else None


def approval_rate(action: Action, now: datetime | None = None) -> ApprovalRate:
    """The agent's record on this action type, counted as approvals.autonomy.metrics
    counts it everywhere: human approvals over human decisions, vetoes and
    rollbacks of its auto-approved actions counting against."""
    policy = PromotionPolicy.for_department(action.department_id)
    since = policy.window_start(now or timezone.now())
    found = metrics.for_agents([action.agent_id], since, action_type_id=action.action_type_id)[action.agent_id]
    return ApprovalRate(rate=found.approval, window_days=policy.window_days)
