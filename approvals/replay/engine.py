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
recorded: the record the first evaluation looks at.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from itertools import groupby

from django.db.models import QuerySet
from django.utils import timezone

from agents.models import AgentStatus, Grant
from approvals.autonomy.metrics import APPROVED_AFTER, ROLLED_BACK
from approvals.autonomy.trust import cap_of
from approvals.models import ActionType, PromotionPolicy, Verdict
from approvals.replay import history
from approvals.replay.changes import Change
from approvals.replay.history import GrantFacts, Row
from approvals.replay.tally import Tally
from approvals.rules import policy
from approvals.rules.lifecycle import Status
from approvals.rules.trust import Metrics, assess

# The pure policy, remembered: most proposals repeat the facts of an earlier one.
_decide = lru_cache(maxsize=65_536)(policy.decide)

APPROVE, REJECT = "approve", "reject"


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


def judged(row: Row) -> str | None:
    """What humans made of a recorded proposal: approve, reject, or nothing."""
    if row.verdict == Verdict.PENDING:
        if row.status in APPROVED_AFTER:
            return APPROVE
        return REJECT if row.status == Status.REJECTED else None
    if row.verdict == Verdict.APPROVED:
        return REJECT if row.status == Status.REJECTED or row.status in ROLLED_BACK else APPROVE
    if row.verdict == Verdict.SHADOWED and (row.marks_for or row.marks_against):
        return APPROVE if row.marks_for > row.marks_against else REJECT
    return None


# The columns of a grant's running record, in Metrics' order.
PROPOSALS, HUMAN_APPROVED, HUMAN_REJECTED, VETOED, ROLLED_BACK_, AUTO_APPROVED, MARKS, MARKS_FOR = range(8)
COUNTS = ("proposals", "human_approved", "human_rejected", "vetoed", "rolled_back", "auto_approved",
          "shadow_marks", "shadow_would_approve")  # fmt: skip


def counted(row: Row, verdict: str) -> tuple[int, ...]:
    """How a proposal counts in the trust metrics had the policy said `verdict`
    (approvals.autonomy.metrics' rules, applied to the replayed verdict)."""
    counts = [1, 0, 0, 0, 0, 0, 0, 0]
    opinion = judged(row)
    if verdict == Verdict.APPROVED:
        counts[AUTO_APPROVED] = 1
        if opinion == REJECT:
            counts[ROLLED_BACK_ if row.status in ROLLED_BACK else VETOED] = 1
    elif verdict == Verdict.PENDING:
        if opinion == APPROVE:
            counts[HUMAN_APPROVED] = 1
        elif opinion == REJECT:
            counts[HUMAN_REJECTED] = 1
    elif verdict == Verdict.SHADOWED:
        if row.verdict == Verdict.SHADOWED:
            counts[MARKS], counts[MARKS_FOR] = row.marks_for + row.marks_against, row.marks_for
        elif opinion is not None:
            counts[MARKS], counts[MARKS_FOR] = 1, int(opinion == APPROVE)
    return tuple(counts)


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


def replay(
    change: Change, *, days: int = 30, now: datetime | None = None, department_ids: Collection[int] | None = None
) -> Outcome:
    """Replay the last `days` days (today included) with the change.
    `department_ids`: only the grants of these departments' agents (a lead's reach); None for all."""
    if days < 1:
        raise ValueError(f"A replay needs at least one day, not {days}.")
    now = now or timezone.now()
    today = timezone.localdate(now)
    replayed_days = [today - timedelta(days=days - 1 - n) for n in range(days)]
    start = midnight(replayed_days[0])
    scope = affected(change)
    if department_ids is not None:
        scope = scope.filter(agent__department_id__in=list(department_ids))
    facts = history.grants(scope)
    policy_of = PromotionPolicy.by_department()
    policies = {g.id: _policy_for(change, g, policy_of) for g in facts}
    lead_in = max((p.window_days for p in policies.values()), default=0)
    evaluations = [midnight(day + timedelta(days=1)) for day in replayed_days[:-1]] + [now]
    outcome = Outcome(change, start, now, replayed_days, len(facts), Tally(replayed_days))
    by_id = {g.id: g for g in facts}
    action_types = _action_types(change, facts)
    walked: set[int] = set()
    for grant_id, rows in groupby(history.rows(by_id, start - timedelta(days=lead_in)), key=lambda r: r.grant_id):
        walked.add(grant_id)
        grant = by_id[grant_id]
        _walk(change, grant, action_types[grant.action_type_id], policies[grant_id], rows, start, evaluations, outcome)
    for grant in facts:
        if grant.id not in walked:  # no proposals: its tier may still move
            action_type = action_types[grant.action_type_id]
            _walk(change, grant, action_type, policies[grant.id], (), start, evaluations, outcome)
        outcome.recorded_moves.extend(
            Move(grant.label, m.at, m.from_tier, m.to_tier, m.reason, f"by {m.by}" if m.by else "", m.automatic)
            for m in grant.moves
            if m.at >= start
        )
    outcome.moves.sort(key=lambda m: (m.at, m.grant))
    outcome.recorded_moves.sort(key=lambda m: (m.at, m.grant))
    return outcome


def _policy_for(change: Change, grant: GrantFacts, policy_of: object) -> PromotionPolicy:
    if change.kind == "policy":
        assert change.policy is not None
        return change.policy  # every affected grant is under the changed policy
    return policy_of(grant.department_id)  # type: ignore[operator]


def _action_types(change: Change, facts: list[GrantFacts]) -> dict[int, ActionType]:
    """The grants' action types, read at once; the changed one as proposed."""
    found = ActionType.objects.in_bulk({g.action_type_id for g in facts})
    if change.kind == "action_type" and change.action_type is not None:
        found[change.action_type.pk] = change.action_type
    return found


@dataclass
class _State:
    tier: str
    changed_at: datetime
    recommended: str | None = None


def _walk(
    change: Change,
    grant: GrantFacts,
    action_type: ActionType,
    rules: PromotionPolicy,
    rows: Iterable[Row],
    start: datetime,
    evaluations: list[datetime],
    outcome: Outcome,
) -> None:
    risk, cap = action_type.risk, cap_of(action_type)
    later = [m for m in grant.moves if m.at >= start]
    earlier = [m for m in grant.moves if m.at < start]
    if change.kind == "grant":
        assert change.grant is not None
        base = history.terms_of(change.grant)
        state = _State(change.grant.tier, start)
        by_hand: list[history.RecordedMove] = []  # the change replaces whatever was set by hand
    else:
        base = grant.terms
        at_start = later[0].from_tier if later else grant.tier
        since = earlier[-1].at if earlier else (grant.tier_changed_at if not later else grant.created_at)
        state = _State(at_start, since)
        by_hand = [m for m in later if not m.automatic]
    daily_limits = base.max_actions_per_day is not None or base.max_amount_per_day is not None
    retired = grant.agent_status == AgentStatus.RETIRED
    times: list[datetime] = []
    running: list[tuple[int, ...]] = [(0,) * 8]
    day_counters: dict[date, tuple[int, Decimal]] = {}
    next_eval = 0
    tally = outcome.tally

    def evaluate(at: datetime) -> None:
        window_from = max(at - timedelta(days=rules.window_days), state.changed_at)
        first = bisect.bisect_left(times, window_from)
        totals = [a - b for a, b in zip(running[-1], running[first], strict=True)]
        record = Metrics(**dict(zip(COUNTS, totals, strict=True)), since=window_from)
        assessment = assess(state.tier, cap, record, rules)
        if assessment.target is None or retired:
            state.recommended = None
            return
        if not assessment.automatic:
            if state.recommended != assessment.target:
                outcome.moves.append(_move(grant, at, assessment, automatic=False))
                state.recommended = assessment.target
            return
        outcome.moves.append(_move(grant, at, assessment, automatic=True))
        state.tier, state.changed_at, state.recommended = assessment.target, at, None

    def catch_up(until: datetime) -> None:
        nonlocal next_eval
        while True:
            eval_at = evaluations[next_eval] if next_eval < len(evaluations) else None
            hand_at = by_hand[0].at if by_hand else None
            upcoming = min((t for t in (eval_at, hand_at) if t is not None and t <= until), default=None)
            if upcoming is None:
                return
            if hand_at is not None and upcoming == hand_at:
                move = by_hand.pop(0)
                state.tier, state.changed_at, state.recommended = move.to_tier, move.at, None
            else:
                evaluate(upcoming)
                next_eval += 1

    terms_at = {base.tier: base}  # one GrantTerms per tier, so the remembered rulings are found again
    for row in rows:
        if row.created_at < start:
            verdict = row.verdict  # the lead-in: as recorded
        else:
            catch_up(row.created_at)
            day = timezone.localdate(row.created_at)
            counters: dict[str, object] = {}
            if daily_limits:
                count, amount = day_counters.get(day, (0, Decimal(0)))
                counters = {"actions_today": count, "amount_today": amount}
            ruling = _decide(
                policy.Proposal(
                    risk=risk,
                    agent_status=AgentStatus.SUSPENDED if row.code == "agent_suspended" else AgentStatus.ACTIVE,
                    gateway_paused=row.code == "gateway_paused",
                    grant=terms_at.get(state.tier) or terms_at.setdefault(state.tier, replace(base, tier=state.tier)),
                    amount=row.amount,
                    confidence=row.confidence,
                    **counters,  # type: ignore[arg-type]
                )
            )
            verdict = ruling.verdict
            if daily_limits and verdict != Verdict.BLOCKED:
                day_counters[day] = (count + 1, amount + (row.amount or Decimal(0)))
            tally.add(row, verdict, day)
        times.append(row.created_at)
        previous = running[-1]
        running.append(tuple(a + b for a, b in zip(previous, counted(row, verdict), strict=True)))
    catch_up(outcome.end)


def _move(grant: GrantFacts, at: datetime, assessment: object, *, automatic: bool) -> Move:
    return Move(
        grant.label,
        at,
        assessment.tier,  # type: ignore[attr-defined]
        assessment.target,  # type: ignore[attr-defined]
        assessment.reason,  # type: ignore[attr-defined]
        assessment.explanation,  # type: ignore[attr-defined]
        automatic,
    )
