"""The policy: given the facts of one proposal, run now, wait, shadow or refuse.

A pure function of its inputs (no database, no clock), so every rule is a
table row in tests/rules/test_policy.py. The reason names the rule and the numbers,
for the lead reading the queue and for the agent reading its 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from agents.vocabulary import AgentStatus, Tier
from approvals.vocabulary import Risk, Verdict


@dataclass(frozen=True)
class GrantTerms:
    tier: str
    max_amount_per_action: Decimal | None = None
    max_actions_per_day: int | None = None
    max_amount_per_day: Decimal | None = None
    auto_approve_max_amount: Decimal | None = None
    min_confidence: Decimal = Decimal("0.8")


@dataclass(frozen=True)
class Proposal:
    risk: str
    agent_status: str = AgentStatus.ACTIVE
    gateway_paused: bool = False
    grant: GrantTerms | None = None
    amount: Decimal | None = None
    confidence: Decimal | None = None
    actions_today: int = 0  # this agent's earlier proposals of this type today
    amount_today: Decimal = Decimal(0)  # their total amount


@dataclass(frozen=True)
class Ruling:
    verdict: str
    code: str
    reason: str


def money(value: Decimal) -> str:
    return f"{value:,.2f}"


def ratio(value: Decimal) -> str:
    """Two decimals, three when the third counts: 0.799 must not read as the floor 0.80."""
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def decide(p: Proposal) -> Ruling:
    if p.grant is None:
        return Ruling(Verdict.BLOCKED, "not_granted", "This agent has no grant for this action type.")
    if p.agent_status != AgentStatus.ACTIVE:
        return Ruling(Verdict.BLOCKED, "agent_suspended", f"The agent is {p.agent_status}; it may not propose actions.")
    if p.gateway_paused:
        return Ruling(Verdict.BLOCKED, "gateway_paused", "The gateway is paused: no action is accepted.")
    over_limit = _hard_limit_breach(p, p.grant)
    if over_limit:
        return Ruling(Verdict.BLOCKED, "limit_exceeded", over_limit)

    if p.grant.tier == Tier.OBSERVER:
        return Ruling(Verdict.SHADOWED, "observer", "Observer tier: recorded and shown to leads, never executed.")
    if p.grant.tier == Tier.CONTRIBUTOR:
        return Ruling(Verdict.PENDING, "contributor", "Contributor tier: every action waits for a human.")
    if p.risk in (Risk.HIGH, Risk.CRITICAL):
        return Ruling(Verdict.PENDING, "permanent_gate", f"{p.risk.capitalize()}-risk actions always wait for a human.")
    held = _auto_approve_hold(p, p.grant)
    if held:
        return Ruling(Verdict.PENDING, "needs_review", held)
    return Ruling(Verdict.APPROVED, "executor", "Executor tier, within this grant's limits: approved by policy.")


def judge_edit(p: Proposal) -> Ruling | None:
    """A lead's edit, judged as a proposal of the edited payload would be on
    the grant's hard limits: the amount read from the edit, the counters of
    the day without the action itself. None when it is within them. (The
    tier and the auto-approve limit do not apply: a human is approving.)"""
    if p.grant is None:
        return Ruling(Verdict.BLOCKED, "not_granted", "This agent no longer has a grant for this action type.")
    over_limit = _hard_limit_breach(p, p.grant)
    if over_limit:
        return Ruling(Verdict.BLOCKED, "limit_exceeded", over_limit)
    return None


def _hard_limit_breach(p: Proposal, g: GrantTerms) -> str:
    amount = p.amount or Decimal(0)
    if g.max_amount_per_action is not None and amount > g.max_amount_per_action:
        return f"amount {money(amount)} is over this grant's limit of {money(g.max_amount_per_action)} per action"
    if g.max_actions_per_day is not None and p.actions_today + 1 > g.max_actions_per_day:
        count, limit = p.actions_today + 1, g.max_actions_per_day
        return f"this would be action {count} today, over this grant's limit of {limit} a day"
    if g.max_amount_per_day is not None and p.amount_today + amount > g.max_amount_per_day:
        return (
            f"today's total would be {money(p.amount_today + amount)}, "
            f"over this grant's daily limit of {money(g.max_amount_per_day)}"
        )
    return ""


def _auto_approve_hold(p: Proposal, g: GrantTerms) -> str:
    amount = p.amount or Decimal(0)
    if g.auto_approve_max_amount is not None and amount > g.auto_approve_max_amount:
        return (
            f"amount {money(amount)} is over this grant's auto-approve limit of "
            f"{money(g.auto_approve_max_amount)}: a human decides"
        )
    if p.confidence is None or p.confidence < g.min_confidence:
        stated = "not stated" if p.confidence is None else ratio(p.confidence)
        return f"confidence {stated} is under this grant's floor of {ratio(g.min_confidence)}: a human decides"
    return ""
