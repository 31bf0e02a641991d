"""The replay: the recorded proposals run again through the gateway's own
rules, with one thing changed.

For each grant the change touches, its proposals are walked in time order:

1. Each proposal of the replayed days is decided again by
   approvals.rules.policy.decide with the facts it was proposed with (its
   amount, confidence and the day's counters, recounted as the replay goes,
   since a proposal the change blocks uses up nothing), the grant's limits
   (the proposed ones, for a grant change) and the tier the grant would have
   held then. What the recorded verdict says of the moment (the agent was
   suspended, the gateway paused) is kept.
2. At the end of each day (and now), the trust rule
   approvals.rules.trust.assess looks at the grant's record as the replay
   made it, over its department's policy window (the proposed policy, for a
   policy change), from its last simulated tier change: promotions and
   demotions move the simulated tier, and the next day's proposals are
   decided at it. A move a person made (not automatic) is made again at its
   time; under recommend-only policies a promotion is noted, not made.
3. What humans did stands in for what they would have done: a proposal a
   human approved would have been approved, one they rejected, vetoed or
   rolled back would have been overruled (a veto, had it run on its own),
   and an auto-approved one nobody overruled would have been approved by a
   human asked. A shadowed proposal's marks say what its leads thought.

The proposals of the policy window before the first replayed day count as
recorded: the record the first evaluation looks at. A policy change alters
no proposal's facts, only the tier it meets: a proposal that meets the tier
it was recorded at keeps its recorded verdict; the others are decided again.
So a grant's day kept wholly as recorded, with no checkpoint inside it, is
counted in SQL rather than walked (_walk_days).

Times are POSIX seconds here (approvals.replay.history reads them so): a
million rows are read and walked without a datetime object each.

One module of about 500 lines on purpose: the walk, the day counting and the
evaluation at each day's end share one grant's state in the hot loop; split
apart, they would hand it back and forth a million times.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import groupby
from operator import itemgetter, sub
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from agents.models import AgentStatus, Grant
from approvals.autonomy.metrics import APPROVED_AFTER, ROLLED_BACK
from approvals.autonomy.trust import cap_of
from approvals.models import ActionType, PromotionPolicy, Verdict
from approvals.replay import history
from approvals.replay.changes import Change
from approvals.replay.history import (
    AMOUNT_PLACES,
    AT,
    CENTS,
    CODE,
    CONFIDENCE_PLACES,
    MARKS_AGAINST,
    MARKS_FOR,
    STATUS,
    THOUSANDTHS,
    VERDICT,
    GrantFacts,
    RawRow,
    RecordedMove,
)
from approvals.replay.tally import Tally
from approvals.rules import policy
from approvals.rules.lifecycle import Status
from approvals.rules.trust import Assessment, Metrics, assess, evidence_of

APPROVE, REJECT = "approve", "reject"
DAY = 86_400.0


@dataclass(frozen=True)
class Move:
    """A tier change the replayed evaluation made (or, not automatic, recommended)."""

    grant: str
    at: datetime
    from_tier: str
    to_tier: str
    reason: str
    explanation: str
    automatic: bool


@dataclass
class Outcome:
    change: Change
    start: datetime
    end: datetime
    days: list[date]
    grants: int
    tally: Tally
    moves: list[Move] = field(default_factory=list)
    recorded_moves: list[Move] = field(default_factory=list)
    assessed: dict[Any, Assessment] = field(default_factory=dict, repr=False)


def judged(verdict: str, status: str, marks_for: int, marks_against: int) -> str | None:
    """What humans made of a recorded proposal: approve, reject, or nothing."""
    if verdict == Verdict.PENDING:
        if status in APPROVED_AFTER:
            return APPROVE
        return REJECT if status == Status.REJECTED else None
    if verdict == Verdict.APPROVED:
        return REJECT if status == Status.REJECTED or status in ROLLED_BACK else APPROVE
    if verdict == Verdict.SHADOWED and (marks_for or marks_against):
        return APPROVE if marks_for > marks_against else REJECT
    return None


# How a proposal counts in the trust metrics: one tuple in Metrics' order.
COUNTS = ("proposals", "human_approved", "human_rejected", "vetoed", "rolled_back", "auto_approved",
          "shadow_marks", "shadow_would_approve")  # fmt: skip
PROPOSALS, HUMAN_APPROVED, HUMAN_REJECTED, VETOED, ROLLED_BACK_, AUTO_APPROVED, SHADOW_MARKS, SHADOW_FOR = range(8)
NOTHING = [0] * len(COUNTS)


# A kind of proposal, as far as the metrics care: (replayed verdict, recorded verdict, status, marks for, against).
Kind = tuple[str, str, str, int, int]


@lru_cache(maxsize=4096)
def counted(verdict: str, recorded: str, status: str, marks_for: int, marks_against: int) -> tuple[int, ...]:
    """How a recorded proposal counts (approvals.autonomy.metrics' rules) had the policy said `verdict`."""
    counts = [1, 0, 0, 0, 0, 0, 0, 0]
    opinion = judged(recorded, status, marks_for, marks_against)
    if verdict == Verdict.APPROVED:
        counts[AUTO_APPROVED] = 1
        if opinion == REJECT:
            counts[ROLLED_BACK_ if status in ROLLED_BACK else VETOED] = 1
    elif verdict == Verdict.PENDING:
        if opinion == APPROVE:
            counts[HUMAN_APPROVED] = 1
        elif opinion == REJECT:
            counts[HUMAN_REJECTED] = 1
    elif verdict == Verdict.SHADOWED:
        if recorded == Verdict.SHADOWED:
            counts[SHADOW_MARKS], counts[SHADOW_FOR] = marks_for + marks_against, marks_for
        elif opinion is not None:
            counts[SHADOW_MARKS], counts[SHADOW_FOR] = 1, int(opinion == APPROVE)
    return tuple(counts)


# A grant's limits in the units its rows are read in (approvals.replay.history.scaled): per action,
# auto-approve (cents), the confidence floor (thousandths), actions a day, amount a day (cents).
Limits = tuple[Any, Any, Any, int | None, Any]


def limits_of(terms: policy.GrantTerms) -> Limits:
    return (
        history.scaled(terms.max_amount_per_action, AMOUNT_PLACES),
        history.scaled(terms.auto_approve_max_amount, AMOUNT_PLACES),
        history.scaled(terms.min_confidence, CONFIDENCE_PLACES),
        terms.max_actions_per_day,
        history.scaled(terms.max_amount_per_day, AMOUNT_PLACES),
    )


def proposal_class(
    limits: Limits, code: str, cents: int | None, thousandths: int | None, count: int, spent: int
) -> tuple[Any, ...]:
    """What decide can tell apart in a recorded proposal, under one grant's limits: its verdict code
    (which says whether the agent was suspended or the gateway paused), and whether its amount, its
    confidence and the day's counters with it are under, at or over each of the limits.

    decide reads a proposal's numbers only by comparing them with the grant's limits, so two
    proposals of one class, at one tier and risk, get one verdict: the replay asks decide once per
    class (a few dozen per grant), not once per proposal (half a million in a fleet's month).
    tests/replay/test_proposal_classes.py holds decide to it."""
    per_action, auto_max, floor, per_day, day_max = limits
    amount = cents or 0  # decide reads no amount as 0
    return (
        code,
        None if per_action is None else (amount > per_action) - (amount < per_action),
        None if auto_max is None else (amount > auto_max) - (amount < auto_max),
        None if thousandths is None else (thousandths > floor) - (thousandths < floor),
        None if per_day is None else (count + 1 > per_day) - (count + 1 < per_day),
        None if day_max is None else (spent + amount > day_max) - (spent + amount < day_max),
    )


@lru_cache(maxsize=4096)
def counted_sparse(kind: Kind) -> tuple[tuple[int, int], ...]:
    """counted(*kind), as (position, value) for the counts it adds to: the record is summed a kind
    of proposal (or a day's group of them) at a time, some hundred thousand times in a replay."""
    return tuple((i, value) for i, value in enumerate(counted(*kind)) if value)


def as_metrics(totals: tuple[int, ...]) -> Metrics:
    """A record's counts, in COUNTS' order, as the trust rule reads them."""
    proposals, human_approved, human_rejected, vetoed, rolled_back, auto_approved, marks, marks_for = totals
    return Metrics(
        proposals=proposals,
        human_approved=human_approved,
        human_rejected=human_rejected,
        vetoed=vetoed,
        rolled_back=rolled_back,
        auto_approved=auto_approved,
        shadow_marks=marks,
        shadow_would_approve=marks_for,
    )


def midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def affected(change: Change) -> QuerySet[Grant]:
    """The grants whose proposals or tiers the change can alter."""
    if change.kind == "grant":
        assert change.grant is not None
        return Grant.objects.filter(pk=change.grant.pk)
    if change.kind == "action_type":
        assert change.action_type is not None
        return Grant.objects.filter(action_type_id=change.action_type.pk)
    if change.department is not None:
        return Grant.objects.filter(agent__department=change.department)
    overridden = PromotionPolicy.objects.filter(department__isnull=False).values("department_id")
    return Grant.objects.exclude(agent__department_id__in=overridden)


@dataclass(frozen=True)
class Clock:
    """The replay's instants, as POSIX seconds."""

    since: float  # the first proposal read (the policy window before the first day)
    start: float  # the first replayed day's midnight
    now: float
    day_starts: list[float]  # each replayed day's midnight, and the next one's
    midnights: list[float]  # every midnight from `since` on
    evaluations: list[float]  # each replayed day's end, and now

    def day_of(self, at: float) -> int:
        """The replayed day `at` falls on, by its place in the days; -1 before the first."""
        return bisect.bisect_right(self.day_starts, at) - 1

    def day_end(self, day: int) -> float:
        return self.day_starts[day + 1] if day + 1 < len(self.day_starts) else math.inf


def replay(
    change: Change, *, days: int = 30, now: datetime | None = None, department_ids: Collection[int] | None = None
) -> Outcome:
    """Replay the last `days` days (today included) with the change.
    `department_ids`: only the grants of these departments' agents (a lead's reach); None for all."""
    if days < 1:
        raise ValueError(f"A replay needs at least one day, not {days}.")
    with history.reading():
        return _replay(change, days, now or timezone.now(), department_ids)


def _replay(change: Change, days: int, now: datetime, department_ids: Collection[int] | None) -> Outcome:
    today = timezone.localdate(now)
    replayed_days = [today - timedelta(days=days - 1 - n) for n in range(days)]
    scope = affected(change)
    if department_ids is not None:
        scope = scope.filter(agent__department_id__in=list(department_ids))
    facts = history.grants(scope)
    policy_of = PromotionPolicy.by_department()
    policies = {g.id: _policy_for(change, g, policy_of) for g in facts}
    lead_in = max((p.window_days for p in policies.values()), default=0)
    start = midnight(replayed_days[0])
    first_day = replayed_days[0] - timedelta(days=lead_in + 1)
    clock = Clock(
        since=(start - timedelta(days=lead_in)).timestamp(),
        start=start.timestamp(),
        now=now.timestamp(),
        day_starts=[midnight(day).timestamp() for day in [*replayed_days, today + timedelta(days=1)]],
        midnights=[midnight(first_day + timedelta(days=n)).timestamp() for n in range((today - first_day).days + 1)],
        evaluations=[midnight(day + timedelta(days=1)).timestamp() for day in replayed_days[:-1]] + [now.timestamp()],
    )
    outcome = Outcome(change, start, now, replayed_days, len(facts), Tally(replayed_days))
    action_types = _action_types(change, facts)
    walkers = {g.id: _Walk(change, g, action_types[g.action_type_id], policies[g.id], clock, outcome) for g in facts}
    _walk_days(walkers, clock, outcome.tally)
    for grant in facts:
        outcome.recorded_moves.extend(
            Move(grant.label, m.at, m.from_tier, m.to_tier, m.reason, f"by {m.by}" if m.by else "", m.automatic)
            for m in grant.moves
            if m.at >= start
        )
    outcome.tally.finish()
    outcome.moves.sort(key=lambda m: (m.at, m.grant))
    outcome.recorded_moves.sort(key=lambda m: (m.at, m.grant))
    return outcome


def _walk_days(walkers: dict[int, _Walk], clock: Clock, tally: Tally) -> None:
    """Each grant day by day, from the policy window before the first day to now.

    A day on which a grant's proposals keep their recorded verdicts (a day before the first
    replayed one; under a policy change, a day spent wholly at the tier they were recorded at)
    and inside which no evaluation or window starts is counted in SQL, per (grant, day,
    verdict, status): its rows are not read. The rows of the other days are read, in two
    queries: the days before the first replayed one that must be walked (known beforehand),
    then each grant's rows from its first replayed day that must be, to the last (a grant
    whose tier has once gone its own way seldom comes back to the recorded one)."""
    bounds = [datetime.fromtimestamp(clock.since, UTC)]
    while bounds[-1].timestamp() < clock.day_starts[-1]:
        bounds.append(midnight(timezone.localdate(bounds[-1]) + timedelta(days=1)))
    seconds = [b.timestamp() for b in bounds]
    last = len(bounds) - 2  # today: walked to the last row (a set clock may have rows after now)
    first = bisect.bisect_left(seconds, clock.start)  # the first replayed day
    # Only a policy change keeps recorded verdicts past the first replayed day: else count up to it.
    policy_change = any(w.keeps_recorded for w in walkers.values())
    # Read meanwhile (history.meanwhile), while the days are counted: the leads' marks, and the
    # median time to decision of the replayed days, which depends on no verdict.
    marks_read = history.meanwhile(history.marks, walkers, bounds[0])
    median = history.meanwhile(history.median_decision_seconds, walkers, bounds[first])
    by_day, verdicts_by_day = _counted_days(walkers, bounds, last if policy_change else first, marks_read)
    marks = marks_read()

    def add_day(walker: _Walk, k: int) -> None:
        totals = by_day.get((walker.grant.id, k))
        if totals is not None:
            walker.add(totals)
            if k >= first:
                day = k - first
                for verdict, n in verdicts_by_day[walker.grant.id, k]:
                    tally.by_day[day, verdict, verdict] += n

    # The days with a checkpoint inside (a window starting, a tier set by hand): known beforehand,
    # their rows read at once and walked.
    inside = {
        g: {k for k in range(last) if w.checkpoint_inside(seconds[k], seconds[k + 1])} for g, w in walkers.items()
    }
    spans: dict[int, list[int]] = {}
    for grant_id, walked_days in inside.items():
        for k in walked_days:
            spans.setdefault(k, []).append(grant_id)
    early: dict[int, list[RawRow]] = {}
    with history.rows(((ids, bounds[k], bounds[k + 1]) for k, ids in sorted(spans.items())), marks) as found:
        for row in found:
            early.setdefault(row[0], []).append(row)
    from_day: dict[int, list[int]] = {}  # the day each grant's rows are walked from, to the last
    for grant_id, walker in walkers.items():
        rows, walked_days = early.get(grant_id, []), inside[grant_id]
        taken = 0
        for k in range(last + 1):
            walker.pass_checkpoints(seconds[k])
            if k in walked_days:
                taken = bisect.bisect_left(rows, seconds[k], lo=taken, key=_at)
                ends = bisect.bisect_left(rows, seconds[k + 1], lo=taken, key=_at)
                walker.run(rows[taken:ends])
                taken = ends
            elif k < last and walker.as_recorded(seconds[k], seconds[k + 1]):
                add_day(walker, k)
            else:
                from_day.setdefault(k, []).append(grant_id)
                break
    later = ((ids, bounds[k], None) for k, ids in sorted(from_day.items()))
    with history.rows(later, marks) as found:
        for grant_id, rows_of_grant in groupby(found, key=itemgetter(0)):
            walkers[grant_id].run(rows_of_grant)
    for walker in walkers.values():
        walker.pass_checkpoints(clock.now)
    tally.median_decision_seconds = median()


def _at(row: RawRow) -> float:
    return float(row[1])


def _counted_days(
    walkers: dict[int, _Walk], bounds: list[datetime], last: int, marks: Callable[[], dict[str, history.Marks]]
) -> tuple[dict[tuple[int, int], list[int]], dict[tuple[int, int], list[tuple[str, int]]]]:
    """Each (grant, day)'s record as recorded, counted in SQL (the days before day `last`): how it
    counts in the trust metrics, and its proposals per verdict; with the leads' marks summed by day
    (`marks` waits for them, once the counts are in)."""
    days = {timezone.localdate(b): k for k, b in enumerate(bounds[:last])}
    by_day: dict[tuple[int, int], list[int]] = {}
    verdicts_by_day: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for grant_id, day, verdict, status, n in history.counts_by_day(walkers, bounds[0], bounds[last]):
        key = (grant_id, days[day])
        totals = by_day.get(key)
        if totals is None:
            totals = by_day[key] = [0] * len(COUNTS)
            verdicts_by_day[key] = []
        for i, value in counted_sparse((verdict, verdict, status, 0, 0)):
            totals[i] += value * n
        verdicts_by_day[key].append((verdict, n))
    seconds = [b.timestamp() for b in bounds[: last + 1]]
    for grant_id, at, marks_for, marks_against in marks().values():
        k = bisect.bisect_right(seconds, at) - 1
        if 0 <= k < last:
            key = (grant_id, k)
            totals = by_day.get(key)
            if totals is None:
                totals = by_day[key] = [0] * len(COUNTS)
            totals[SHADOW_MARKS] += marks_for + marks_against  # as counted() counts a shadowed row's marks
            totals[SHADOW_FOR] += marks_for
    return by_day, verdicts_by_day


def _policy_for(change: Change, grant: GrantFacts, policy_of: Callable[[int | None], PromotionPolicy]) -> Any:
    if change.kind == "policy":
        assert change.policy is not None
        return change.policy  # every affected grant is under the changed policy
    return policy_of(grant.department_id)


def _action_types(change: Change, facts: list[GrantFacts]) -> dict[int, ActionType]:
    """The grants' action types, read at once; the changed one as proposed."""
    found = ActionType.objects.in_bulk({g.action_type_id for g in facts})
    if change.kind == "action_type" and change.action_type is not None:
        found[change.action_type.pk] = change.action_type
    return found


class _Walk:
    """One grant's proposals in time order, with its simulated tier."""

    def __init__(
        self,
        change: Change,
        grant: GrantFacts,
        action_type: ActionType,
        rules: PromotionPolicy,
        clock: Clock,
        outcome: Outcome,
    ) -> None:
        self.grant, self.rules, self.clock, self.outcome = grant, rules, clock, outcome
        self.risk, self.cap = action_type.risk, cap_of(action_type)
        self.window = rules.window_days * DAY
        start = datetime.fromtimestamp(clock.start, UTC)
        later = [m for m in grant.moves if m.at >= start]
        earlier = [m for m in grant.moves if m.at < start]
        if change.kind == "grant":
            assert change.grant is not None
            self.base = history.terms_of(change.grant)
            self.tier, self.changed_at = change.grant.tier, clock.start
            by_hand: list[RecordedMove] = []  # the change replaces whatever was set by hand
        else:
            self.base = grant.terms
            self.tier = later[0].from_tier if later else grant.tier
            since = earlier[-1].at if earlier else (grant.tier_changed_at if not later else grant.created_at)
            self.changed_at = since.timestamp()
            by_hand = [m for m in later if not m.automatic]
        self.by_hand = {m.at.timestamp(): m.to_tier for m in by_hand}
        # A policy change alters no proposal's facts: where the tier is the recorded one, so is the verdict.
        self.keeps_recorded = change.kind == "policy"
        self.recorded_at = [m.at.timestamp() for m in grant.moves]
        self.recorded_tiers = [grant.moves[0].from_tier] + [m.to_tier for m in grant.moves] if grant.moves else []
        self.daily_limits = self.base.max_actions_per_day is not None or self.base.max_amount_per_day is not None
        self.retired = grant.agent_status == AgentStatus.RETIRED
        self.recommended: str | None = None
        self.terms_at = {self.base.tier: self.base}
        self.verdicts_at: dict[str, dict[tuple[Any, ...], str]] = {}
        self.limits = limits_of(self.base)
        # Where the record is read from: each needs the counts as they stood then.
        evaluations = set(clock.evaluations)
        marks = {*clock.midnights, *evaluations, *(t - self.window for t in evaluations), *self.by_hand}
        if self.changed_at >= clock.since:
            marks.add(self.changed_at)
        self.checkpoint_list = sorted(t for t in marks if t >= clock.since)
        self.checkpoints: Iterator[float] = iter(self.checkpoint_list)
        self.next_checkpoint = next(self.checkpoints, math.inf)
        self.evaluations = evaluations
        # The rule is pure and reads one rate of the record (evidence_of): the same rate at the same
        # tier, cap and policy, the same answer.
        self.assessed = outcome.assessed
        # The record: the kinds of proposal walked since the last checkpoint; everything before it
        # (walked, or counted per day in SQL), summed in COUNTS' order; those sums at each checkpoint.
        self.counts: Counter[Kind] = Counter()
        self.totals = [0] * len(COUNTS)
        self.totals_at: dict[float, list[int]] = {}

    def checkpoint_inside(self, lo: float, hi: float) -> bool:
        """Whether the record must be read at a moment strictly inside (lo, hi)."""
        i = bisect.bisect_right(self.checkpoint_list, lo)
        return i < len(self.checkpoint_list) and self.checkpoint_list[i] < hi

    def as_recorded(self, lo: float, hi: float) -> bool:
        """Whether the grant's proposals in [lo, hi) keep their recorded verdicts, with no
        checkpoint inside: then the record of those rows can be counted in SQL."""
        if self.next_checkpoint < hi:
            return False
        if lo < self.clock.start:
            return True  # the policy window before the first day counts as recorded
        if not self.keeps_recorded:
            return False
        moves = self.recorded_at
        return bisect.bisect_right(moves, lo) == bisect.bisect_left(moves, hi) and self.tier == self.recorded_tier(lo)

    def recorded_tier(self, at: float) -> str:
        return self.recorded_tier_until(at)[0]

    def recorded_tier_until(self, at: float) -> tuple[str, float]:
        """The tier the grant was recorded at at `at`, and when the record next moved it (inf: never)."""
        i = bisect.bisect_right(self.recorded_at, at)
        tier = self.recorded_tiers[i] if self.recorded_tiers else self.grant.tier
        return tier, self.recorded_at[i] if i < len(self.recorded_at) else math.inf

    def terms(self) -> policy.GrantTerms:
        found = self.terms_at.get(self.tier)
        if found is None:
            found = self.terms_at[self.tier] = replace(self.base, tier=self.tier)
        return found

    def run(self, rows: Iterable[RawRow]) -> None:
        # The hot loop of a replay (half a million rows and more): rows as the driver reads them
        # (a Row made only for a fate), names bound once. What a row is judged by changes only at
        # moments known beforehand: the tier and its verdicts at a checkpoint, the day (and its
        # counters) at a midnight, the tier recorded then at a recorded move; so they are looked
        # up again only when a row reaches the next of those moments.
        clock, tally, counts = self.clock, self.outcome.tally, self.counts
        add, by_day, start, limits = tally.add, tally.by_day, clock.start, self.limits
        daily_limits, keeps_recorded, blocked = self.daily_limits, self.keeps_recorded, Verdict.BLOCKED
        day, count, spent = -2, 0, 0  # the day (none yet: day_of answers -1 and up), its proposals and cents so far
        next_change = -math.inf
        for row in rows:
            at, recorded = row[AT], row[VERDICT]
            if at >= next_change:
                self.pass_checkpoints(at)
                tier, verdicts = self.tier, self.verdicts()
                if (on := clock.day_of(at)) != day:
                    day, count, spent = on, 0, 0
                # Under any other change no verdict is kept as recorded: no tier is compared.
                recorded_tier, recorded_until = self.recorded_tier_until(at) if keeps_recorded else (None, math.inf)
                next_change = min(self.next_checkpoint, clock.day_end(day), recorded_until)
            if at < start:
                verdict = recorded  # the policy window before the first day: as recorded
            elif tier == recorded_tier:
                verdict = recorded
                by_day[day, recorded, verdict] += 1  # all Tally.add does for it
            else:
                code, cents, thousandths = row[CODE], row[CENTS], row[THOUSANDTHS]
                kind = proposal_class(limits, code, cents, thousandths, count, spent)
                verdict = verdicts.get(kind)
                if verdict is None:
                    verdict = verdicts[kind] = self.decide(code, cents, thousandths, count, spent)
                if daily_limits and verdict != blocked:
                    count, spent = count + 1, spent + (cents or 0)
                if verdict == recorded:
                    by_day[day, recorded, verdict] += 1  # all Tally.add does for an unmoved verdict
                else:
                    add(row, verdict, day)
            counts[verdict, recorded, row[STATUS], row[MARKS_FOR], row[MARKS_AGAINST]] += 1

    def verdicts(self) -> dict[tuple[Any, ...], str]:
        """The verdicts decide gave at the current tier, by class of proposal (proposal_class)."""
        return self.verdicts_at.setdefault(self.tier, {})

    def decide(self, code: str, cents: int | None, thousandths: int | None, count: int, spent: int) -> str:
        """The policy's verdict on a recorded proposal at the current tier: the agent's status and the
        gateway's pause as its recorded verdict code says they were."""
        suspended, paused = code == "agent_suspended", code == "gateway_paused"
        proposal = policy.Proposal(
            self.risk,
            AgentStatus.SUSPENDED if suspended else AgentStatus.ACTIVE,
            paused,
            self.terms(),
            history.unscaled(cents, AMOUNT_PLACES),
            history.unscaled(thousandths, CONFIDENCE_PLACES),
            count,
            history.unscaled(spent, AMOUNT_PLACES) or Decimal(0),
        )
        return policy.decide(proposal).verdict

    def add(self, counts: list[int]) -> None:
        """A day counted in SQL, in COUNTS' order, into the record (a new list, as above)."""
        self.totals = [a + b for a, b in zip(self.totals, counts, strict=True)]

    def pass_checkpoints(self, until: float) -> None:
        while self.next_checkpoint <= until:
            at = self.next_checkpoint
            if self.counts:
                totals = list(self.totals)  # a new list: the one before may be a checkpoint's
                for kind, n in self.counts.items():
                    for i, value in counted_sparse(kind):
                        totals[i] += value * n
                self.totals = totals
                self.counts.clear()  # in place: the walk holds it
            self.totals_at[at] = self.totals
            if at in self.by_hand:
                self.tier, self.changed_at, self.recommended = self.by_hand[at], at, None
            if at in self.evaluations:
                self.evaluate(at)
            self.next_checkpoint = next(self.checkpoints, math.inf)

    def evaluate(self, at: float) -> None:
        """The trust evaluation at `at`, on the record the replay made."""
        window_from = max(at - self.window, self.changed_at)
        then = self.totals_at.get(window_from, NOTHING)
        record = as_metrics(tuple(map(sub, self.totals, then)))
        evidence = evidence_of(self.tier, record)
        key = (self.tier, self.cap, evidence.successes, evidence.trials, id(self.rules))
        assessment = self.assessed.get(key)
        if assessment is None:
            assessment = self.assessed[key] = assess(self.tier, self.cap, record, self.rules)
        if assessment.target is None or self.retired:
            self.recommended = None
            return
        if not assessment.automatic:
            if self.recommended != assessment.target:  # noted once, as a lead would see it offered
                self.outcome.moves.append(self.move(at, assessment, automatic=False))
                self.recommended = assessment.target
            return
        self.outcome.moves.append(self.move(at, assessment, automatic=True))
        self.tier, self.changed_at, self.recommended = assessment.target, at, None

    def move(self, at: float, assessment: Assessment, *, automatic: bool) -> Move:
        return Move(
            self.grant.label,
            timezone.localtime(datetime.fromtimestamp(at, UTC)),
            assessment.tier,
            assessment.target or "",
            assessment.reason,
            assessment.explanation,
            automatic,
        )
