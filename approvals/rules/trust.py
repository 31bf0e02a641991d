"""The trust rule: when a grant's tier moves, as a pure function of values.

`assess` takes a grant's tier, its action type's cap, its metrics (counts,
as approvals.autonomy.metrics reads them from the rows), the department's
promotion policy and whether the agent was released anew. In order:

1. A new agent version drops an executor grant to contributor: an update is
   a release, and its autonomy is earned again.
2. A grant above its action type's cap (high and critical stay contributor,
   e.g. after an admin raised the risk) drops to the cap.
3. Demotion, one tier, when the rate that counts for the tier falls under
   the demote threshold: on a full sample (the policy's minimum of
   decisions), or on a smaller one whose whole 95 % interval is under it.
4. Promotion, one tier, never past the cap: observer → contributor on the
   shadow agreement rate, contributor → executor on the approval rate, each
   with at least the minimum of decisions and at or above the promote
   threshold (and its interval's lower bound too, in lower-bound mode). In
   recommend-only mode it is offered to a lead instead of made.

No database, no clock: the evaluation (approvals.autonomy.trust) gathers the
facts and applies what this says, and anything else that wants to know what
the rule would do with other facts can ask it the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypedDict

from agents.vocabulary import Tier
from approvals.vocabulary import TierChangeReason

if TYPE_CHECKING:
    from approvals.models import PromotionPolicy

Z_95 = 1.959964  # the normal quantile of a two-sided 95 % interval


@dataclass(frozen=True)
class Rate:
    """Successes over trials, with the Wilson score 95 % interval: unlike the
    normal approximation it stays inside [0, 1] and is honest about small
    samples (3 of 3 is not "100 %, certain")."""

    successes: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials < 0 or not 0 <= self.successes <= self.trials:
            raise ValueError(f"A rate needs 0 ≤ successes ≤ trials, not {self.successes} of {self.trials}.")

    @property
    def value(self) -> float | None:
        return self.successes / self.trials if self.trials else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.trials:
            return None
        n, p, z2 = self.trials, self.successes / self.trials, Z_95 * Z_95
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        spread = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return max(0.0, centre - spread), min(1.0, centre + spread)

    @property
    def lower(self) -> float | None:
        interval = self.interval
        return interval[0] if interval else None

    @property
    def upper(self) -> float | None:
        interval = self.interval
        return interval[1] if interval else None

    def snapshot(self) -> dict[str, Any]:
        return {"successes": self.successes, "trials": self.trials, "rate": self.value, "interval": self.interval}


@dataclass(frozen=True)
class Metrics:
    """One grant's, agent's or department's record over a window."""

    proposals: int = 0
    human_approved: int = 0
    human_rejected: int = 0
    vetoed: int = 0
    rolled_back: int = 0
    auto_approved: int = 0
    shadow_marks: int = 0
    shadow_would_approve: int = 0
    median_decision_seconds: float | None = None
    since: datetime | None = field(default=None, compare=False)

    @property
    def decisions(self) -> int:
        """Human decisions, counting each veto and rollback of an auto-approval as one against."""
        return self.human_approved + self.human_rejected + self.vetoed + self.rolled_back

    @property
    def approval(self) -> Rate:
        return Rate(self.human_approved, self.decisions)

    @property
    def shadow_agreement(self) -> Rate:
        return Rate(self.shadow_would_approve, self.shadow_marks)

    def snapshot(self) -> dict[str, Any]:
        """JSON for the tier-change record: what the evaluation saw."""
        counts = asdict(self)
        counts["since"] = self.since.isoformat() if self.since else None
        return {
            **counts,
            "decisions": self.decisions,
            "approval": self.approval.snapshot(),
            "shadow_agreement": self.shadow_agreement.snapshot(),
        }


LADDER = (Tier.OBSERVER, Tier.CONTRIBUTOR, Tier.EXECUTOR)


# How close counts as "near a tier change" on the dashboard.
NEAR = 5


def _step(tier: str, by: int) -> Tier | None:
    index = LADDER.index(Tier(tier)) + by
    return LADDER[index] if 0 <= index < len(LADDER) else None


def rank(tier: str) -> int:
    return LADDER.index(Tier(tier))


def _percent(value: float | Fraction | Decimal | None) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f} %"


@dataclass(frozen=True)
class Assessment:
    """What the rule says of one grant now, and how far it is from a move."""

    tier: str
    target: str | None  # the tier it moves to, None to stay
    reason: str  # a TierChangeReason when it moves
    explanation: str
    automatic: bool  # applied by the evaluation; False: a promotion offered to a lead
    evidence: Rate  # shadow agreement for observers, approval for the others
    decisions_short: int  # decisions still missing for the minimum
    approvals_short: int | None  # consecutive approvals that would bring the rate to the promote threshold
    rejections_to_demotion: int | None  # consecutive decisions against that would demote

    @property
    def is_recommendation(self) -> bool:
        return self.target is not None and not self.automatic

    @property
    def near_a_change(self) -> bool:
        if self.target is not None:
            return True
        close_to_promotion = self.approvals_short is not None and self.approvals_short + self.decisions_short <= NEAR
        close_to_demotion = self.rejections_to_demotion is not None and self.rejections_to_demotion <= NEAR
        return close_to_promotion or close_to_demotion


class _Gaps(TypedDict):
    """How far a grant is from a move: Assessment's last three fields."""

    decisions_short: int
    approvals_short: int | None
    rejections_to_demotion: int | None


def evidence_of(tier: str, found: Metrics) -> Rate:
    """The one rate of a record the rule reads at this tier: shadow agreement for an observer,
    approval for the others. `assess` reads nothing else of the record."""
    return found.shadow_agreement if tier == Tier.OBSERVER else found.approval


def assess(tier: str, cap: str, found: Metrics, policy: PromotionPolicy, *, new_version: bool = False) -> Assessment:
    evidence = evidence_of(tier, found)
    promote_at, demote_at = Fraction(policy.promote_threshold), Fraction(policy.demote_threshold)
    rate = Fraction(evidence.successes, evidence.trials) if evidence.trials else None
    what = "shadow agreement" if tier == Tier.OBSERVER else "approval rate"
    gaps: _Gaps = {
        "decisions_short": max(0, policy.min_decisions - evidence.trials),
        "approvals_short": _approvals_short(evidence, promote_at)
        if _step(tier, 1) and rank(tier) < rank(cap)
        else None,
        "rejections_to_demotion": _rejections_to_demotion(evidence, demote_at, policy.min_decisions)
        if tier != Tier.OBSERVER
        else None,
    }

    def move(target: str, reason: str, explanation: str, automatic: bool = True) -> Assessment:
        return Assessment(tier, target, reason, explanation, automatic, evidence, **gaps)

    if new_version and tier == Tier.EXECUTOR:
        return move(
            Tier.CONTRIBUTOR,
            TierChangeReason.NEW_VERSION,
            "A new agent version: updates are releases, so its autonomy is earned again, from a fresh window.",
        )
    if rank(tier) > rank(cap):
        return move(cap, TierChangeReason.OVER_CAP, f"Its action type's risk caps it at {cap}.")
    lower = _step(tier, -1)
    if lower is not None and rate is not None and rate < demote_at:
        full_sample = evidence.trials >= policy.min_decisions
        certain = evidence.upper is not None and evidence.upper < demote_at
        if full_sample or certain:
            return move(
                lower,
                TierChangeReason.DEMOTED,
                f"Its {what} of {_percent(rate)} over {evidence.trials} "
                f"decisions is under the demote threshold of {_percent(demote_at)}.",
            )
    higher = _step(tier, 1)
    if higher is not None and rank(higher) <= rank(cap) and rate is not None:
        enough = evidence.trials >= policy.min_decisions
        high_enough = rate >= promote_at
        bound_ok = not policy.require_lower_bound or (evidence.lower or 0) >= promote_at
        if enough and high_enough and bound_ok:
            bound = f" (95 % interval from {_percent(evidence.lower)})" if policy.require_lower_bound else ""
            return move(
                higher,
                TierChangeReason.PROMOTED,
                f"Its {what} of {_percent(rate)}{bound} over "
                f"{evidence.trials} decisions meets the promote threshold of {_percent(promote_at)}.",
                automatic=policy.auto_promote,
            )
    return Assessment(tier, None, "", _holding(tier, cap, evidence, policy, what), True, evidence, **gaps)


def _holding(tier: str, cap: str, evidence: Rate, policy: PromotionPolicy, what: str) -> str:
    if rank(tier) >= rank(cap):
        return f"At its cap ({cap})." if tier != Tier.EXECUTOR else "At the top tier."
    if evidence.trials < policy.min_decisions:
        return f"{evidence.trials} of the {policy.min_decisions} decisions a promotion needs."
    if policy.require_lower_bound and (evidence.lower or 0) < policy.promote_threshold:
        return (
            f"Its {what}'s interval starts at {_percent(evidence.lower)}, under {_percent(policy.promote_threshold)}."
        )
    return f"Its {what} of {_percent(evidence.value)} is under {_percent(policy.promote_threshold)}."


def _approvals_short(evidence: Rate, promote_at: Fraction) -> int | None:
    """Smallest k with (a + k) / (n + k) ≥ threshold; None when it can never get there."""
    if promote_at >= 1:
        return 0 if evidence.trials and evidence.successes == evidence.trials else None
    needed = (promote_at * evidence.trials - evidence.successes) / (1 - promote_at)
    return max(0, math.ceil(needed))


def _rejections_to_demotion(evidence: Rate, demote_at: Fraction, min_decisions: int) -> int | None:
    """Smallest r with a / (n + r) under the threshold and n + r at the minimum."""
    if demote_at <= 0:
        return None
    by_rate = math.floor(evidence.successes / demote_at - evidence.trials) + 1
    return max(0, by_rate, min_decisions - evidence.trials)
