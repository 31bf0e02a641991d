"""The replay's counts, kept as it goes: recorded against replayed verdicts,
per day and overall, and what became of the proposals whose verdict moved."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from approvals.autonomy.metrics import APPROVED_AFTER, ROLLED_BACK
from approvals.models import Verdict
from approvals.replay.history import (
    AMOUNT_PLACES,
    AT,
    DECIDED_AT,
    HUMAN_DECIDED,
    STATUS,
    VERDICT,
    RawRow,
    Row,
    unscaled,
)
from approvals.rules.lifecycle import Status

VERDICTS = (Verdict.APPROVED, Verdict.PENDING, Verdict.SHADOWED, Verdict.BLOCKED)

# What became of a proposal, as recorded; the first four are the cost of auto-approving it.
REJECTED, VETOED, ROLLED_BACK_, FAILED = "rejected", "vetoed", "rolled_back", "failed"
APPROVED, UNDECIDED, NEVER_SEEN = "approved", "undecided", "never_seen"
COST = (REJECTED, VETOED, ROLLED_BACK_, FAILED)
FATES = (*COST, APPROVED, UNDECIDED, NEVER_SEEN)


def fate(row: Row) -> str:
    """What humans (and the target system) made of a recorded proposal."""
    if row.verdict == Verdict.BLOCKED:
        return NEVER_SEEN
    if row.verdict == Verdict.SHADOWED:
        if row.marks_against and row.marks_against >= row.marks_for:
            return REJECTED  # its leads marked it "would reject"
        return APPROVED if row.marks_for else UNDECIDED
    if row.status == Status.REJECTED:
        return VETOED if row.verdict == Verdict.APPROVED else REJECTED
    if row.status in ROLLED_BACK:
        return ROLLED_BACK_
    if row.status == Status.FAILED:
        return FAILED
    if row.status in APPROVED_AFTER:
        return APPROVED
    return UNDECIDED


@dataclass
class Fates:
    """How many proposals met each fate, and the money they carried, by currency."""

    count: Counter[str] = field(default_factory=Counter)
    money: dict[str, dict[str, Decimal]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Decimal)))

    def add(self, row: Row) -> None:
        what = fate(row)
        self.count[what] += 1
        amount = unscaled(row.cents, AMOUNT_PLACES)
        if amount is not None:
            self.money[what][row.currency] += amount

    @property
    def total(self) -> int:
        return sum(self.count.values())

    @property
    def cost(self) -> int:
        return sum(self.count[what] for what in COST)

    def cost_money(self) -> dict[str, Decimal]:
        total: dict[str, Decimal] = defaultdict(Decimal)
        for what in COST:
            for currency, amount in self.money[what].items():
                total[currency] += amount
        return dict(total)


class Tally:
    """Fed one replayed proposal at a time (approvals.replay.engine)."""

    def __init__(self, days: list[date]) -> None:
        self.days = days
        self.by_day: Counter[tuple[int, str, str]] = Counter()  # (day, recorded, replayed verdict)
        self.moved: Counter[tuple[str, str]] = Counter()  # (recorded, replayed) verdicts, once finished
        self.recorded_by_day = [Counter[str]() for _ in days]
        self.replayed_by_day = [Counter[str]() for _ in days]
        self.newly_auto_approved = Fates()
        self.no_longer_auto_approved = Fates()
        # The measured median time to decision of every replayed proposal a human decided (whatever
        # the change does to it): found in SQL (approvals.replay.history.median_decision_seconds).
        self.median_decision_seconds: float | None = None
        self.saved_seconds = 0.0  # of the decisions the change takes off the leads
        self.decisions_saved = 0
        self.decisions_added = 0

    def add(self, row: RawRow, verdict: str, day: int) -> None:
        """One replayed proposal whose verdict moved: the recorded row, the replayed verdict, and the
        replayed day it falls on. (An unmoved one only counts: by_day[day, verdict, verdict] += 1.)
        The row comes as the driver read it; a Row is made only for a fate, which few need."""
        recorded = row[VERDICT]
        self.by_day[day, recorded, verdict] += 1
        if verdict == Verdict.APPROVED:
            self.newly_auto_approved.add(Row._make(row))
        elif recorded == Verdict.APPROVED:
            self.no_longer_auto_approved.add(Row._make(row))
        if recorded == Verdict.PENDING:
            self.decisions_saved += 1
            decided_at = row[DECIDED_AT]
            if decided_at is not None and row[STATUS] in HUMAN_DECIDED:
                self.saved_seconds += decided_at - row[AT]
        elif verdict == Verdict.PENDING:
            self.decisions_added += 1

    def finish(self) -> None:
        """The totals, from the counts by day."""
        for (day, recorded, verdict), n in self.by_day.items():
            self.moved[recorded, verdict] += n
            if 0 <= day < len(self.days):
                self.recorded_by_day[day][recorded] += n
                self.replayed_by_day[day][verdict] += n

    # ------------------------------------------------------------ totals

    def recorded(self, verdict: str) -> int:
        return sum(n for (recorded, _), n in self.moved.items() if recorded == verdict)

    def replayed(self, verdict: str) -> int:
        return sum(n for (_, replayed), n in self.moved.items() if replayed == verdict)

    @property
    def proposals(self) -> int:
        return sum(self.moved.values())

    @property
    def added_seconds(self) -> float:
        """Decisions the change puts before the leads, each at the measured median."""
        return self.decisions_added * (self.median_decision_seconds or 0.0)
