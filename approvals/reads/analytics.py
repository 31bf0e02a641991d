"""Decision analytics: how each approver of a department decides, and the
signals that they may be approving without reading (docs/trust.md).

Per approver, over the window: the load (approvals, rejections and vetoes;
shadow marks are evidence for an observer, not decisions, and are left out),
the median time from an action's arrival to their decision, and their
approvals per active hour (approvals over the clock hours in which they
decided anything: their pace while at it, not over a whole day).

Rubber-stamp signals:

- Too fast to read: an approval made sooner after the action arrived, or after
  the same person's previous decision, than its payload takes to read. The
  reading time is READING_BASE_SECONDS plus one second per
  READING_CHARS_PER_SECOND characters of the payload as compact JSON, about
  the pace of careful reading of structured text. Either gap is when the
  approver could, at the most, have been reading it.
- A long unbroken streak: STREAK_FLAG or more approvals in a row without a
  rejection or veto: as long as the whole sample a promotion rests on.
- A large bulk approval: BULK_SIZE or more approvals, each within
  BULK_GAP_SECONDS of the one before.

The flags are about the approver, not the agent: the trust evaluation
counts every decision as it stands (docs/trust.md says why). The rows are
read in Python: a department's decisions over a month are thousands, not
millions, and the streak and burst rules are sequential.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet

from approvals.models import APPROVING, Decision, DecisionVerdict, Department

READING_BASE_SECONDS = 2.0
READING_CHARS_PER_SECOND = 25.0
STREAK_FLAG = 50
BULK_SIZE = 10
BULK_GAP_SECONDS = 10.0
# What counts as a decision here: marks on shadowed actions do not.
DECIDING = (*APPROVING, DecisionVerdict.REJECT, DecisionVerdict.VETO)


def reading_seconds(payload: Any) -> float:
    """How long a payload takes to read, by the documented rule."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    return READING_BASE_SECONDS + len(text) / READING_CHARS_PER_SECOND


@dataclass
class Approver:
    """One person's decisions in a department over the window."""

    user_id: int
    name: str
    decisions: int = 0
    approvals: int = 0
    rejections: int = 0
    median_seconds: float | None = None
    approvals_per_hour: float | None = None
    too_fast: int = 0  # approvals sooner than their payload can be read
    longest_streak: int = 0
    bulk_runs: list[int] = field(default_factory=list)  # sizes of the bulk approvals
    flagged: int = 0  # approvals too fast or in a bulk approval (counted once)

    @property
    def largest_bulk(self) -> int:
        return max(self.bulk_runs, default=0)

    @property
    def signals(self) -> list[str]:
        found = []
        if self.too_fast:
            found.append(f"{self.too_fast} approvals faster than their preview can be read")
        if self.longest_streak >= STREAK_FLAG:
            found.append(f"{self.longest_streak} approvals in a row without a rejection")
        if self.bulk_runs:
            runs = ", ".join(str(size) for size in sorted(self.bulk_runs, reverse=True))
            found.append(f"bulk approvals of {runs} actions")
        return found


# One decision as _decisions reads it: who, their names, the verdict, when, the action's arrival and payload.
_DecisionRow = tuple[int, str, str, str, str, datetime, datetime, Any]


def _decisions(department: Department, since: datetime) -> QuerySet[Decision, _DecisionRow]:
    return (
        Decision.objects.filter(action__department=department, created_at__gte=since, verdict__in=DECIDING)
        .order_by("user_id", "created_at", "pk")
        .values_list(
            "user_id",
            "user__username",
            "user__first_name",
            "user__last_name",
            "verdict",
            "created_at",
            "action__created_at",
            "action__payload",
        )
    )


def approvers(department: Department, since: datetime) -> list[Approver]:
    """Every person who decided on the department's actions since `since`, busiest first."""
    found: dict[int, Approver] = {}
    state: dict[int, dict[str, Any]] = {}
    for user_id, username, first, last, verdict, decided, arrived, payload in _decisions(department, since):
        person = found.get(user_id)
        if person is None:
            name = f"{first} {last}".strip() or username
            person = found[user_id] = Approver(user_id, name)
            state[user_id] = {"previous": None, "streak": 0, "run": [], "waits": [], "hours": set(), "flags": set()}
        seen = state[user_id]
        person.decisions += 1
        seen["waits"].append((decided - arrived).total_seconds())
        seen["hours"].add(decided.replace(minute=0, second=0, microsecond=0))
        approving = verdict in APPROVING
        if approving:
            person.approvals += 1
            seen["streak"] += 1
            person.longest_streak = max(person.longest_streak, seen["streak"])
            available = decided - max(arrived, seen["previous"] or arrived)
            if available < timedelta(seconds=reading_seconds(payload)):
                person.too_fast += 1
                seen["flags"].add(person.decisions)
            _extend_run(person, seen, decided)
        else:
            person.rejections += 1
            seen["streak"] = 0
            _close_run(person, seen)
        seen["previous"] = decided
    for user_id, person in found.items():
        seen = state[user_id]
        _close_run(person, seen)
        person.median_seconds = statistics.median(seen["waits"]) if seen["waits"] else None
        person.approvals_per_hour = person.approvals / len(seen["hours"]) if seen["hours"] else None
        person.flagged = len(seen["flags"])
    return sorted(found.values(), key=lambda p: (-p.decisions, p.name))


def _extend_run(person: Approver, seen: dict[str, Any], decided: datetime) -> None:
    run = seen["run"]
    if run and (decided - run[-1][1]).total_seconds() > BULK_GAP_SECONDS:
        _close_run(person, seen)
        run = seen["run"]
    run.append((person.decisions, decided))


def _close_run(person: Approver, seen: dict[str, Any]) -> None:
    run = seen["run"]
    if len(run) >= BULK_SIZE:
        person.bulk_runs.append(len(run))
        seen["flags"].update(number for number, _ in run)
    seen["run"] = []
