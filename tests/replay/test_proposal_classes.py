"""The replay asks the policy once per class of proposal, not once per
proposal (approvals.replay.engine.proposal_class): two proposals whose
numbers stand alike against the grant's limits get one verdict. Held to
decide itself on proposals drawn at and around every limit, and on a random
month recorded by the real services, replayed both ways: each proposal
decided on its own, and each class once."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.models import Tier
from approvals.models import PromotionPolicy, Risk
from approvals.replay import changes, engine, history
from approvals.replay.engine import Outcome
from approvals.rules import policy
from tests.support.replay_histories import approved, days_ago, grant, proposed, refund_type, rejected

CODES = ("executor", "contributor", "observer", "needs_review", "limit_exceeded", "agent_suspended", "gateway_paused")
PER_ACTION, AUTO_APPROVE, FLOOR, PER_DAY, DAY_MAX = Decimal("400.00"), Decimal("150.00"), Decimal("0.800"), 4, 600


def near(*values: int) -> st.SearchStrategy[int]:
    """Whole cents (or thousandths) at, just under and just over each value, or anywhere."""
    return st.one_of(st.sampled_from([v + d for v in values for d in (-1, 0, 1)]), st.integers(0, 100_000))


terms = st.builds(
    policy.GrantTerms,
    tier=st.sampled_from(Tier.values),
    max_amount_per_action=st.sampled_from([None, PER_ACTION]),
    max_actions_per_day=st.sampled_from([None, PER_DAY]),
    max_amount_per_day=st.sampled_from([None, Decimal(DAY_MAX)]),
    auto_approve_max_amount=st.sampled_from([None, AUTO_APPROVE]),
    min_confidence=st.sampled_from([FLOOR, Decimal("0.500")]),
)
proposals = st.tuples(
    st.sampled_from(CODES),
    st.one_of(st.none(), near(0, 15_000, 40_000, 60_000)),  # cents, about the amount limits
    st.one_of(st.none(), st.sampled_from([499, 500, 501, 799, 800, 801]), st.integers(0, 1000)),  # thousandths
    st.sampled_from([0, PER_DAY - 2, PER_DAY - 1, PER_DAY]),  # the day's proposals so far
    near(0, 20_000, 45_000, 60_000),  # the day's cents so far
)


@pytest.mark.embedded
@settings(max_examples=300, deadline=None)
@given(terms=terms, risk=st.sampled_from(Risk.values), drawn=st.lists(proposals, min_size=2, max_size=40))
def test_decide_gives_the_proposals_of_one_class_one_verdict(terms, risk, drawn):
    limits, verdicts = engine.limits_of(terms), {}
    for code, cents, thousandths, count, spent in drawn:
        proposal = policy.Proposal(
            risk,
            "suspended" if code == "agent_suspended" else "active",
            code == "gateway_paused",
            terms,
            history.unscaled(cents, history.AMOUNT_PLACES),
            history.unscaled(thousandths, history.CONFIDENCE_PLACES),
            count,
            history.unscaled(spent, history.AMOUNT_PLACES) or Decimal(0),
        )
        kind = engine.proposal_class(limits, code, cents, thousandths, count, spent)
        assert verdicts.setdefault(kind, policy.decide(proposal).verdict) == policy.decide(proposal).verdict


@pytest.fixture
def random_month(agent, lead):
    """Two refund grants' proposals over ten days, drawn at random (seeded): amounts at, under and
    over each limit, confidences about the floor, up to eight a day against a limit of four, and
    Finance approving most of what waits for it."""
    draw = random.Random(18)
    PromotionPolicy.objects.create(department=agent.department, window_days=5, min_decisions=4)
    limits = {
        "max_amount_per_action": PER_ACTION,
        "max_actions_per_day": PER_DAY,
        "max_amount_per_day": Decimal(DAY_MAX),
        "auto_approve_max_amount": AUTO_APPROVE,
        "min_confidence": FLOOR,
    }
    refunds = grant(agent, refund_type(), tier=Tier.CONTRIBUTOR, **limits).action_type
    credits = grant(agent, refund_type(slug="payments.credit"), tier=Tier.EXECUTOR, **limits).action_type
    amounts = ["150.00", "149.99", "150.01", "400.00", "400.01", "20.00", "90.00", "300.00"]
    for day in reversed(range(10)):
        for n in range(draw.randint(2, 8)):
            action_type = draw.choice([refunds, credits])
            confidence = Decimal(draw.choice(["0.750", "0.799", "0.800", "0.950"]))
            action = proposed(agent, action_type, days_ago(day, 9, n), draw.choice(amounts), confidence=confidence)
            if action.verdict == "pending":
                decide = rejected if draw.random() < 0.3 else approved
                decide(action, lead, after=timedelta(minutes=draw.randint(5, 300)))
    return agent


def found(outcome: Outcome) -> dict[str, Any]:
    t = outcome.tally
    return {
        "verdicts": dict(t.by_day),
        "newly": (dict(t.newly_auto_approved.count), dict(t.newly_auto_approved.cost_money())),
        "no_longer": (dict(t.no_longer_auto_approved.count), dict(t.no_longer_auto_approved.cost_money())),
        "lead_time": (t.decisions_saved, t.decisions_added, t.saved_seconds, t.median_decision_seconds),
        "moves": [(m.grant, m.at, m.from_tier, m.to_tier, m.automatic) for m in outcome.moves],
    }


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.parametrize(
    ("kind", "target", "values"),
    [
        ("grant", "refund-bot:payments.refund", {"tier": "executor", "auto_approve_max_amount": "400"}),
        ("grant", "refund-bot:payments.credit", {"max_amount_per_day": "450", "min_confidence": "0.799"}),
        ("policy", "finance", {"min_decisions": "2", "promote_threshold": "0.6", "demote_threshold": "0.5"}),
    ],
)
def test_a_random_month_replays_the_same_when_each_proposal_is_decided_on_its_own(random_month, kind, target, values):
    change = changes.proposed(kind, target, values)
    by_class = found(engine.replay(change, days=10))
    # A class of its own for every proposal: decide rules each one.
    with mock.patch.object(engine, "proposal_class", side_effect=lambda *facts: object()) as classify:
        one_by_one = found(engine.replay(change, days=10))
    assert by_class == one_by_one
    assert classify.call_count >= 15, "too few proposals decided again to tell"
    assert sum(by_class["verdicts"].values()) >= 25
