"""A simulation, start to end: replay the change, compare, and record who
simulated what (the simulator's one write: its audit event).

`simulate` is what the page, the admin's preview and the command call;
`Report.as_dict` is the command's JSON and the template's numbers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from approvals.autonomy.metrics import Day
from approvals.reads import charts
from approvals.replay.changes import Change
from approvals.replay.engine import Move, Outcome, replay
from approvals.replay.tally import FATES, VERDICTS, Fates
from audit.log import Actor, record

DEFAULT_DAYS = 30
MAX_DAYS = 366

VERDICT_WORDS = {
    "approved": "Auto-approved",
    "pending": "Queued for a human",
    "shadowed": "Shadowed",
    "blocked": "Blocked",
}
FATE_WORDS = {
    "rejected": "rejected by a human",
    "vetoed": "vetoed in the undo window",
    "rolled_back": "rolled back",
    "failed": "failed when carried out",
    "approved": "approved, carried out",
    "undecided": "never decided (expired, cancelled, waiting, or shadowed unmarked)",
    "never_seen": "blocked then: no human saw it",
}


def simulate(
    change: Change,
    *,
    actor: Actor,
    days: int = DEFAULT_DAYS,
    department_ids: Collection[int] | None = None,
    now: datetime | None = None,
) -> Report:
    """Replay, then record the audit event `policy.simulated` with the change and the headline numbers."""
    report = Report(replay(change, days=days, now=now, department_ids=department_ids))
    record(
        "policy.simulated",
        _audited_object(change),
        actor=actor,
        after={
            "change": change.describe(),
            "days": days,
            "scope": "all departments" if department_ids is None else sorted(department_ids),
            "summary": report.headline(),
        },
        department_id=change.scope.get("department_id"),
        agent_id=change.scope.get("agent_id"),
    )
    return report


def _audited_object(change: Change) -> Any:
    return change.grant or change.action_type or (change.policy if change.policy and change.policy.pk else None)


def _money(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {currency or "": f"{amount:.2f}" for currency, amount in sorted(amounts.items())}


def money_words(amounts: dict[str, str]) -> str:
    if not amounts:
        return "no money"
    return ", ".join(f"{Decimal(amount):,.2f} {currency}".strip() for currency, amount in amounts.items())


def _fates(fates: Fates) -> dict[str, Any]:
    return {
        "count": fates.total,
        "cost": {"count": fates.cost, "money": _money(fates.cost_money())},
        "by_fate": {
            what: {"count": fates.count[what], "money": _money(dict(fates.money[what]))}
            for what in FATES
            if fates.count[what]
        },
    }


def _move(move: Move) -> dict[str, Any]:
    return {
        "grant": move.grant,
        "at": move.at.isoformat(),
        "from": move.from_tier,
        "to": move.to_tier,
        "reason": move.reason,
        "automatic": move.automatic,
        "explanation": move.explanation,
    }


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


@dataclass
class Report:
    outcome: Outcome

    @property
    def tally(self) -> Any:
        return self.outcome.tally

    def verdict_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "verdict": verdict,
                "words": VERDICT_WORDS[verdict],
                "recorded": self.tally.recorded(verdict),
                "replayed": self.tally.replayed(verdict),
                "difference": self.tally.replayed(verdict) - self.tally.recorded(verdict),
            }
            for verdict in VERDICTS
        ]

    def lead_hours(self) -> dict[str, Any]:
        t = self.tally
        median = t.median_decision_seconds
        return {
            "decisions_saved": t.decisions_saved,
            "saved": _hours(t.saved_seconds),
            "decisions_added": t.decisions_added,
            "added": _hours(t.added_seconds),
            "net_saved": _hours(t.saved_seconds - t.added_seconds),
            "median_minutes_to_decision": None if median is None else round(median / 60, 1),
        }

    def headline(self) -> dict[str, Any]:
        new = self.tally.newly_auto_approved
        return {
            "proposals": self.tally.proposals,
            "verdicts": {row["verdict"]: [row["recorded"], row["replayed"]] for row in self.verdict_rows()},
            "newly_auto_approved": new.total,
            "cost": new.cost,
            "cost_money": _money(new.cost_money()),
            "tier_changes": len(self.outcome.moves),
        }

    def as_dict(self) -> dict[str, Any]:
        o, t = self.outcome, self.tally
        return {
            "change": o.change.describe(),
            "window": {"days": len(o.days), "from": o.start.isoformat(), "until": o.end.isoformat()},
            "grants": o.grants,
            "proposals": t.proposals,
            "verdicts": [{k: v for k, v in row.items() if k != "words"} for row in self.verdict_rows()],
            "moved": [
                {"from": recorded, "to": replayed, "count": n}
                for (recorded, replayed), n in sorted(t.moved.items())
                if recorded != replayed
            ],
            "newly_auto_approved": _fates(t.newly_auto_approved),
            "no_longer_auto_approved": _fates(t.no_longer_auto_approved),
            "lead_hours": self.lead_hours(),
            "tier_changes": {
                "replayed": [_move(m) for m in o.moves],
                "recorded": [_move(m) for m in o.recorded_moves],
            },
            "per_day": [
                {
                    "day": day.isoformat(),
                    "recorded": {v: t.recorded_by_day[n][v] for v in VERDICTS},
                    "replayed": {v: t.replayed_by_day[n][v] for v in VERDICTS},
                }
                for n, day in enumerate(o.days)
            ],
        }

    # ------------------------------------------------------------ for the templates

    def fate_rows(self, which: str) -> list[dict[str, Any]]:
        fates: Fates = getattr(self.tally, which)
        return [
            {
                "fate": what,
                "words": FATE_WORDS[what],
                "count": fates.count[what],
                "money": money_words(_money(dict(fates.money[what]))),
            }
            for what in FATES
            if fates.count[what]
        ]

    def fate_rows_new(self) -> list[dict[str, Any]]:
        return self.fate_rows("newly_auto_approved")

    def cost_words(self) -> str:
        return money_words(_money(self.tally.newly_auto_approved.cost_money()))

    def charts(self) -> tuple[charts.Chart, charts.Chart]:
        """The proposals per day by verdict: as recorded, and as replayed (the same scale: the same proposals)."""
        days = [Day(day) for day in self.outcome.days]

        def stacks(by_day: list[Any]) -> list[charts.Series]:
            return [charts.Series(VERDICT_WORDS[v], f"bar-{v}", [counts[v] for counts in by_day]) for v in VERDICTS]

        return (
            charts.daily_chart(days, stacks(self.tally.recorded_by_day), with_rate=False),
            charts.daily_chart(days, stacks(self.tally.replayed_by_day), with_rate=False),
        )
