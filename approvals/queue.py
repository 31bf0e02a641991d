"""What a lead sees: the reads behind /queue/, its htmx partials, the live
socket and the action page, so all of them agree on who sees what and in
which order.

Visibility has one rule (`visible_to`): a user sees the actions of the
departments they lead, and those of the departments they back up once an
action has escalated. Changes go through approvals.services, never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from approvals.lifecycle import Status
from approvals.models import Action, Decision, DecisionVerdict, Department, Verdict

PAGE_SIZE = 50
# The "recently auto-approved" section lists at most this many: undo windows
# are short, so more than a screenful means something else is wrong.
VETO_LIMIT = 20
HISTORY_LIMIT = 10
RATE_WINDOW = timedelta(days=30)

APPROVING = (DecisionVerdict.APPROVE, DecisionVerdict.EDIT_APPROVE)
HUMAN_VERDICTS = (*APPROVING, DecisionVerdict.REJECT, DecisionVerdict.VETO)

# Where a visible action sits on the queue page: the pending table, the
# shadow lane or the "recently auto-approved" (vetoable) section.
Place = Literal["pending", "shadow", "veto"]
Lane = Literal["pending", "shadow"]
LANES: tuple[Lane, ...] = ("pending", "shadow")
PLACES_BY_LANE: dict[Lane, tuple[Place, ...]] = {"pending": ("pending", "veto"), "shadow": ("shadow",)}


def decider_department_ids(user: Any) -> list[int]:
    """Departments the user leads or backs up: their socket listens to these
    groups and they may open these departments' actions."""
    return list(
        Department.objects.filter(Q(leads=user) | Q(backup_approvers=user))
        .values_list("pk", flat=True)
        .distinct()
        .order_by("pk")
    )


def led_departments(user: Any) -> QuerySet[Department]:
    return Department.objects.filter(leads=user)


def backed_up_departments(user: Any) -> QuerySet[Department]:
    return Department.objects.filter(backup_approvers=user)


def visible_to(user: Any) -> Q:
    """The one visibility rule, as subqueries, so a queue read stays one query."""
    return Q(department_id__in=led_departments(user).values("pk")) | Q(
        department_id__in=backed_up_departments(user).values("pk"), escalated_at__isnull=False
    )


def _annotated(user: Any) -> QuerySet[Action]:
    """Visible actions with what a row shows about this user's part in them."""
    mine = Decision.objects.filter(action=OuterRef("pk"), user=user)
    # A correlated count, not Count() over a join: a GROUP BY would make the
    # database aggregate every pending row before it can sort and cut a page.
    approvals = (
        Decision.objects.filter(action=OuterRef("pk"), verdict__in=APPROVING)
        .order_by()
        .values("action")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        Action.objects.filter(visible_to(user))
        .select_related("agent", "action_type", "department")
        .annotate(
            is_escalated=ExpressionWrapper(Q(escalated_at__isnull=False), output_field=BooleanField()),
            approvals=Coalesce(Subquery(approvals), 0),
            approved_by_me=Exists(mine.filter(verdict__in=APPROVING)),
            my_mark=Subquery(mine.values("verdict")[:1]),
        )
    )


def queue_for(user: Any) -> QuerySet[Action]:
    """Pending actions the user decides, most urgent first: escalated, then
    higher priority, then the nearer SLA deadline, then the older. The last
    key (id) makes the order total, so pages never overlap."""
    return (
        _annotated(user)
        .filter(status=Status.PENDING)
        .order_by("-is_escalated", "-priority", F("sla_deadline").asc(nulls_last=True), "created_at", "pk")
    )


def shadow_lane_for(user: Any) -> QuerySet[Action]:
    """Observer-tier proposals, newest first: evidence for promotion, never executed."""
    return _annotated(user).filter(status=Status.SHADOWED).order_by("-created_at", "pk")


def vetoable_for(user: Any, now: datetime | None = None) -> QuerySet[Action]:
    """Auto-approved actions still inside their undo window, closest to dispatch first."""
    return (
        _annotated(user)
        .filter(status=Status.APPROVED, verdict=Verdict.APPROVED, dispatch_after__gt=now or timezone.now())
        .order_by("dispatch_after", "pk")
    )


def find_for(user: Any, action_id: UUID | str) -> Action | None:
    """One visible action with the row annotations, or None."""
    return _annotated(user).filter(pk=action_id).first()


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


def counts_for(user: Any, now: datetime | None = None) -> QueueCounts:
    """The counters over the queue, in one aggregate query."""
    now = now or timezone.now()
    pending = Q(status=Status.PENDING)
    totals = Action.objects.filter(visible_to(user), status__in=[Status.PENDING, Status.SHADOWED]).aggregate(
        pending=Count("pk", filter=pending),
        escalated=Count("pk", filter=pending & Q(escalated_at__isnull=False)),
        overdue=Count("pk", filter=pending & Q(sla_deadline__lt=now)),
        shadowed=Count("pk", filter=Q(status=Status.SHADOWED)),
    )
    return QueueCounts(**totals)


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
    approved: int
    decided: int
    window_days: int

    @property
    def percent(self) -> int | None:
        return round(100 * self.approved / self.decided) if self.decided else None


def approval_rate(action: Action, now: datetime | None = None) -> ApprovalRate:
    """Human approvals over human decisions on this agent's actions of this
    type, counted as the agent API's /me/ counts them (per decision)."""
    since = (now or timezone.now()) - RATE_WINDOW
    totals = Decision.objects.filter(
        action__agent_id=action.agent_id,
        action__action_type_id=action.action_type_id,
        verdict__in=HUMAN_VERDICTS,
        created_at__gte=since,
    ).aggregate(decided=Count("pk"), approved=Count("pk", filter=Q(verdict__in=APPROVING)))
    return ApprovalRate(approved=totals["approved"], decided=totals["decided"], window_days=RATE_WINDOW.days)
