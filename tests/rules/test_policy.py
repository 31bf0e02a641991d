"""The policy as a table: every rule, its verdict, its code and the numbers its reason names.

approvals.rules.policy.decide is pure, so nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from agents.models import AgentStatus, Tier
from approvals.models import Risk, Verdict
from approvals.rules.policy import GrantTerms, Proposal, decide, money, ratio

D = Decimal

OBSERVER = GrantTerms(tier=Tier.OBSERVER)
CONTRIBUTOR = GrantTerms(tier=Tier.CONTRIBUTOR)
EXECUTOR = GrantTerms(tier=Tier.EXECUTOR, min_confidence=D("0.800"))
LIMITED = GrantTerms(
    tier=Tier.EXECUTOR,
    max_amount_per_action=D("500.00"),
    max_actions_per_day=10,
    max_amount_per_day=D("2000.00"),
    auto_approve_max_amount=D("100.00"),
    min_confidence=D("0.800"),
)


def proposal(**fields) -> Proposal:
    fields.setdefault("risk", Risk.LOW)
    fields.setdefault("grant", EXECUTOR)
    fields.setdefault("confidence", D("0.95"))
    return Proposal(**fields)


# (what, proposal, verdict, code, words the reason must contain)
RULES = [
    # Refusals, checked before any tier.
    ("no grant", proposal(grant=None), Verdict.BLOCKED, "not_granted", ["no grant"]),
    ("suspended agent", proposal(agent_status=AgentStatus.SUSPENDED), Verdict.BLOCKED, "agent_suspended",
     ["suspended"]),
    ("retired agent", proposal(agent_status=AgentStatus.RETIRED), Verdict.BLOCKED, "agent_suspended", ["retired"]),
    ("suspended observer", proposal(grant=OBSERVER, agent_status=AgentStatus.SUSPENDED), Verdict.BLOCKED,
     "agent_suspended", []),
    ("gateway paused", proposal(gateway_paused=True), Verdict.BLOCKED, "gateway_paused", ["paused"]),
    ("gateway paused, contributor", proposal(grant=CONTRIBUTOR, gateway_paused=True), Verdict.BLOCKED,
     "gateway_paused", []),
    ("over the per-action amount", proposal(grant=LIMITED, amount=D("1200")), Verdict.BLOCKED, "limit_exceeded",
     ["1,200.00", "500.00", "per action"]),
    ("over the per-action amount at contributor tier",
     proposal(grant=replace(LIMITED, tier=Tier.CONTRIBUTOR), amount=D("500.01")), Verdict.BLOCKED,
     "limit_exceeded", ["500.01", "500.00"]),
    ("over the per-action amount at observer tier",
     proposal(grant=replace(LIMITED, tier=Tier.OBSERVER), amount=D("501")), Verdict.BLOCKED, "limit_exceeded",
     ["501.00", "500.00"]),
    ("over the actions per day", proposal(grant=LIMITED, amount=D(1), actions_today=10), Verdict.BLOCKED,
     "limit_exceeded", ["action 11 today", "10 a day"]),
    ("over the amount per day", proposal(grant=LIMITED, amount=D("300"), amount_today=D("1800")), Verdict.BLOCKED,
     "limit_exceeded", ["2,100.00", "2,000.00"]),
    ("over a hard limit at a high risk", proposal(grant=LIMITED, risk=Risk.HIGH, amount=D("1200")),
     Verdict.BLOCKED, "limit_exceeded", ["1,200.00"]),
    # Tiers.
    ("observer", proposal(grant=OBSERVER), Verdict.SHADOWED, "observer", ["never executed"]),
    ("observer at critical risk", proposal(grant=OBSERVER, risk=Risk.CRITICAL), Verdict.SHADOWED, "observer", []),
    ("contributor", proposal(grant=CONTRIBUTOR), Verdict.PENDING, "contributor", ["waits for a human"]),
    ("contributor, sure of itself and cheap", proposal(grant=CONTRIBUTOR, confidence=D(1), amount=D(0)),
     Verdict.PENDING, "contributor", []),
    ("executor, low risk", proposal(risk=Risk.LOW), Verdict.APPROVED, "executor", ["approved by policy"]),
    ("executor, medium risk", proposal(risk=Risk.MEDIUM), Verdict.APPROVED, "executor", []),
    ("executor, high risk", proposal(risk=Risk.HIGH, confidence=D(1)), Verdict.PENDING, "permanent_gate",
     ["High-risk"]),
    ("executor, critical risk", proposal(risk=Risk.CRITICAL, confidence=D(1)), Verdict.PENDING, "permanent_gate",
     ["Critical-risk"]),
    ("executor, over the auto-approve amount", proposal(grant=LIMITED, amount=D("100.01")), Verdict.PENDING,
     "needs_review", ["100.01", "100.00", "auto-approve"]),
    ("executor, under the confidence floor", proposal(confidence=D("0.79")), Verdict.PENDING, "needs_review",
     ["0.79", "0.80"]),
    ("executor, just under the confidence floor", proposal(confidence=D("0.799")), Verdict.PENDING, "needs_review",
     ["0.799", "0.80"]),
    ("executor, confidence not stated", proposal(confidence=None), Verdict.PENDING, "needs_review",
     ["not stated", "0.80"]),
    ("executor, no amount, no limits", proposal(amount=None), Verdict.APPROVED, "executor", []),
    # Boundaries: exactly at a limit is within it.
    ("executor, confidence exactly at the floor", proposal(confidence=D("0.800")), Verdict.APPROVED, "executor", []),
    ("executor, amount exactly at the auto-approve limit", proposal(grant=LIMITED, amount=D("100.00")),
     Verdict.APPROVED, "executor", []),
    ("contributor, amount exactly at the per-action limit",
     proposal(grant=replace(LIMITED, tier=Tier.CONTRIBUTOR), amount=D("500.00")), Verdict.PENDING, "contributor", []),
    ("executor, the last action the day allows", proposal(grant=LIMITED, amount=D(1), actions_today=9),
     Verdict.APPROVED, "executor", []),
    ("executor, the day's total exactly at its limit",
     proposal(grant=LIMITED, amount=D("100"), amount_today=D("1900")), Verdict.APPROVED, "executor", []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("proposal_", "verdict", "code", "words"),
    [pytest.param(p, v, c, w, id=what) for what, p, v, c, w in RULES],
)
def test_it_rules_on_a_proposal_by_the_table(proposal_, verdict, code, words):
    ruling = decide(proposal_)
    assert (ruling.verdict, ruling.code) == (verdict, code)
    assert ruling.reason
    for word in words:
        assert word in ruling.reason


def test_it_covers_every_verdict_and_every_code_in_its_table():
    # A guard against the table above quietly losing a rule.
    assert {v for _, _, v, _, _ in RULES} == set(Verdict.values)
    assert {c for _, _, _, c, _ in RULES} == {
        "not_granted",
        "agent_suspended",
        "gateway_paused",
        "limit_exceeded",
        "observer",
        "contributor",
        "permanent_gate",
        "needs_review",
        "executor",
    }


@pytest.mark.parametrize("risk", [Risk.HIGH, Risk.CRITICAL])
@pytest.mark.parametrize("amount", [None, D(0), D("0.01")])
def test_it_never_auto_approves_high_and_critical_risk_however_safe_the_rest(risk, amount):
    ruling = decide(proposal(grant=replace(LIMITED, min_confidence=D(0)), risk=risk, amount=amount, confidence=D(1)))
    assert (ruling.verdict, ruling.code) == (Verdict.PENDING, "permanent_gate")


@pytest.mark.parametrize(
    ("first", "then", "code"),
    [
        ({"grant": None}, {"agent_status": AgentStatus.SUSPENDED, "gateway_paused": True}, "not_granted"),
        ({"agent_status": AgentStatus.SUSPENDED}, {"gateway_paused": True, "amount": D(10_000)}, "agent_suspended"),
        ({"gateway_paused": True}, {"amount": D(10_000)}, "gateway_paused"),
    ],
)
def test_it_names_the_first_refusal_that_applies(first, then, code):
    assert decide(proposal(**{"grant": LIMITED, **then, **first})).code == code


@pytest.mark.parametrize(
    ("amount", "text"),
    [(D(0), "0.00"), (D("0.5"), "0.50"), (D("1200"), "1,200.00"), (D("1234567.891"), "1,234,567.89")],
)
def test_it_writes_money_with_thousands_and_two_decimals(amount, text):
    assert money(amount) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(D("0.8"), "0.80"), (D("0.800"), "0.80"), (D("0.799"), "0.799"), (D("0.75"), "0.75"), (D(1), "1.00")],
)
def test_it_writes_a_confidence_with_the_third_decimal_only_when_it_counts(value, text):
    assert ratio(value) == text
