"""Triage on /queue/: filters, search and sort read from the URL's query
(a GET form, so a filtered queue is a bookmark), the counts beside each
filter, and why a row cannot be approved in bulk.

The filters only narrow what approvals.reads.queue already lets the lead see
(approvals.reach's rule): they are applied on top of queue.queue_for, never
instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, F, Q, QuerySet
from django.http import QueryDict
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone

from agents.models import Agent
from approvals.models import Action, ActionType, Risk
from approvals.reads import previews
from audit.people import Person

# An action due within this long is "due soon".
DUE_SOON = timedelta(hours=1)
SEARCH_MAX = 100
# A search shows at most this many matches (20 pages): past that, narrow it.
SEARCH_LIMIT = 1000

SLA_STATES = {
    "overdue": "Overdue",
    "due_soon": "Due within the hour",
    "on_time": "On time",
    "escalated": "Escalated",
}
SORTS = {
    "urgency": "Most urgent",
    "newest": "Newest",
    "oldest": "Oldest",
    "amount": "Largest amount",
    "confidence": "Lowest confidence",
}
ORDERINGS: dict[str, tuple[Any, ...]] = {
    "newest": ("-created_at", "pk"),
    "oldest": ("created_at", "pk"),
    "amount": (F("amount").desc(nulls_last=True), "created_at", "pk"),
    "confidence": (F("confidence").asc(nulls_last=True), "created_at", "pk"),
}


@dataclass(frozen=True)
class Filters:
    agent: str = ""  # an agent's slug
    type: str = ""  # an action type's slug
    risk: str = ""
    sla: str = ""
    q: str = ""
    sort: str = "urgency"

    @property
    def active(self) -> bool:
        return bool(self.agent or self.type or self.risk or self.sla or self.q)

    @property
    def narrowing(self) -> dict[str, str]:
        """The filters in force, for queue.js to check live rows against."""
        return {name: value for name, value in self.as_query().items() if name != "sort"}

    def as_query(self) -> dict[str, str]:
        values = {"agent": self.agent, "type": self.type, "risk": self.risk, "sla": self.sla, "q": self.q}
        if self.sort != "urgency":
            values["sort"] = self.sort
        return {name: value for name, value in values.items() if value}

    @property
    def query_string(self) -> str:
        """For links that keep the filters (the pager): `agent=…&` or ``."""
        query = self.as_query()
        return urlencode(query) + "&" if query else ""


def from_query(query: QueryDict) -> Filters:
    """The filters a URL asks for. An unknown value is dropped, never an error:
    a stale bookmark still opens the queue."""
    risk = query.get("risk", "")
    sla = query.get("sla", "")
    sort = query.get("sort", "urgency")
    return Filters(
        agent=query.get("agent", "").strip()[:100],
        type=query.get("type", "").strip()[:100],
        risk=risk if risk in Risk.values else "",
        sla=sla if sla in SLA_STATES else "",
        q=" ".join(query.get("q", "").split())[:SEARCH_MAX],
        sort=sort if sort in SORTS else "urgency",
    )


def apply(rows: QuerySet[Action], filters: Filters, now: datetime) -> QuerySet[Action]:
    """Narrow and sort a lane's rows (already limited to what the lead sees)."""
    if filters.agent:
        rows = rows.filter(agent__slug=filters.agent)
    if filters.type:
        rows = rows.filter(action_type__slug=filters.type)
    if filters.risk:
        rows = rows.filter(action_type__risk=filters.risk)
    if filters.sla:
        rows = rows.filter(sla_q(filters.sla, now))
    if filters.q:
        # The payload as JSON text, case-insensitively: keys and values alike.
        rows = rows.filter(Q(reasoning__icontains=filters.q) | Q(payload__icontains=filters.q))
    if filters.sort in ORDERINGS:
        rows = rows.order_by(*ORDERINGS[filters.sort])
    return rows


def sla_q(state: str, now: datetime) -> Q:
    if state == "overdue":
        return Q(sla_deadline__lt=now)
    if state == "due_soon":
        return Q(sla_deadline__gte=now, sla_deadline__lt=now + DUE_SOON)
    if state == "escalated":
        return Q(escalated_at__isnull=False)
    return Q(sla_deadline__isnull=True) | Q(sla_deadline__gte=now + DUE_SOON)


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    count: int


@dataclass(frozen=True)
class Facets:
    """What each filter can narrow to, with how many pending actions each holds."""

    agents: list[Option] = field(default_factory=list)
    types: list[Option] = field(default_factory=list)
    risks: list[Option] = field(default_factory=list)
    sla: list[Option] = field(default_factory=list)


def facets(pending: QuerySet[Action], counts: Any) -> Facets:
    """The counts per agent, type and risk from one grouped read of the
    pending rows, on their ids only (no join over thousands of rows: the
    names come from two small reads, risk follows from the type); per SLA
    state from the queue's counters (approvals.reads.queue.QueueCounts), which
    already read them."""
    # COUNT(*), not COUNT(id): then the GROUP BY reads only action_pending_facets_idx (index-only).
    groups = list(pending.order_by().values_list("agent_id", "action_type_id").annotate(n=Count("*")))
    agent_ids = {agent_id for agent_id, _, _ in groups}
    type_ids = {type_id for _, type_id, _ in groups}
    agents_by_id = {a.pk: a for a in Agent.objects.filter(pk__in=agent_ids).only("slug", "name")}
    types_by_id = {t.pk: t for t in ActionType.objects.filter(pk__in=type_ids).only("slug", "risk")}
    agents: dict[int, int] = {}
    types: dict[int, int] = {}
    risks: dict[str, int] = {}
    for agent_id, type_id, n in groups:
        agents[agent_id] = agents.get(agent_id, 0) + n
        types[type_id] = types.get(type_id, 0) + n
        risk = types_by_id[type_id].risk
        risks[risk] = risks.get(risk, 0) + n
    by_state = {
        "overdue": counts.overdue,
        "due_soon": counts.due_soon,
        "on_time": counts.on_time,
        "escalated": counts.escalated,
    }
    return Facets(
        agents=sorted(
            (Option(agents_by_id[i].slug, agents_by_id[i].name, n) for i, n in agents.items()),
            key=lambda o: o.label.lower(),
        ),
        types=sorted(
            (Option(types_by_id[i].slug, types_by_id[i].slug, n) for i, n in types.items()), key=lambda o: o.value
        ),
        risks=[Option(value, label, risks[value]) for value, label in Risk.choices if value in risks],
        sla=[Option(state, label, by_state[state]) for state, label in SLA_STATES.items()],
    )


@dataclass(frozen=True)
class RowFacts:
    """What a queue row shows beyond plain fields, worked out once per row in
    Python: with 50 rows a page, template filters and URL reversing were most
    of a page's time."""

    effect: str  # the one-line preview (approvals.reads.previews)
    refusal: str  # why it cannot be approved in bulk; "" when it can
    label: str  # "<type> by <agent>": the row's accessible name, and its controls'
    digest: str  # of the standing payload, which the row's forms carry
    reasoning: str  # its first 90 characters
    detail_url: str
    approve_url: str
    reject_url: str
    created: Stamp
    sla: Stamp | None


@dataclass(frozen=True)
class Stamp:
    """A moment as the row's attributes carry it: ISO 8601, Unix seconds, and with microseconds."""

    iso: str
    seconds: int
    exact: str

    @classmethod
    def of(cls, moment: datetime) -> Stamp:
        seconds = int(moment.timestamp())
        return cls(timezone.localtime(moment).isoformat(), seconds, f"{seconds}.{moment.microsecond:06d}")


REASONING_SHOWN = 90
_ZERO = "00000000-0000-0000-0000-000000000000"


@lru_cache(maxsize=8)
def _url_patterns(prefix: str, urlconf: Any) -> tuple[str, ...]:
    """The action URLs with a placeholder id, reversed once per script prefix and URLconf."""
    return tuple(reverse(name, args=[_ZERO]) for name in ("action-detail", "action-approve", "action-reject"))


def row_facts(action: Action, user: Person) -> RowFacts:
    patterns = _url_patterns(get_script_prefix(), get_urlconf())
    detail, approve, reject = (pattern.replace(_ZERO, str(action.pk)) for pattern in patterns)
    reasoning = action.reasoning
    if len(reasoning) > REASONING_SHOWN:
        reasoning = reasoning[: REASONING_SHOWN - 1].rstrip() + "…"
    return RowFacts(
        previews.summary_of(action.action_type, action.effective_payload),
        bulk_refusal(action, user),
        f"{action.action_type.slug} by {action.agent.name}",
        action.standing_digest,
        reasoning,
        detail,
        approve,
        reject,
        Stamp.of(action.created_at),
        Stamp.of(action.sla_deadline) if action.sla_deadline else None,
    )


# ---------------------------------------------------------------- bulk approval


def bulk_refusal(action: Action, user: Person) -> str:
    """Why this row cannot be approved in bulk, in the words the row shows; "" when it can.

    Bulk approval is for the routine: low risk, one approver, not the lead's
    own agent. Everything else is opened and decided on its own.
    """
    if action.agent.owner_id == getattr(user, "pk", None):
        return "you own this agent"
    if getattr(action, "approved_by_me", False):
        return "you approved it already"
    action_type = action.action_type
    if action_type.approvals_required > 1:
        return "needs two approvers"
    if action_type.risk != Risk.LOW:
        return f"{action_type.get_risk_display().lower()} risk: needs review"
    return ""
