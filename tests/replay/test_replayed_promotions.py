"""The trust evaluation, replayed: its promotions and demotions, and when.

A history written by the real services on a set clock, with the real
evaluation run at the end of each day as the beat would: a contributor whose
refunds Finance approves, four a day, is promoted once it has the policy's
ten decisions. Replayed without a change, the simulator finds that same
promotion at that same moment and every recorded verdict again; replayed
with a lower minimum, the promotion comes two days earlier and its refunds
run on their own from then."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents.models import Tier
from approvals.autonomy import trust
from approvals.demo.history import clock
from approvals.models import PromotionPolicy
from approvals.replay import changes, engine, report
from audit.log import Actor
from tests.support.replay_histories import approved, days_ago, grant, proposed, refund_type, rejected

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

DAYS = 7


@pytest.fixture
def promoted(agent, lead):
    policy = PromotionPolicy.objects.create(department=agent.department, min_decisions=10, window_days=7)
    refunds = refund_type()
    refund_grant = grant(agent, refunds, tier=Tier.CONTRIBUTOR)
    for day in reversed(range(DAYS)):
        for n in range(4):
            action = proposed(agent, refunds, days_ago(day, 10, n), "20.00")
            if action.verdict == "pending":
                approved(action, lead)
        if day:  # each day's end, as the hourly run would find it
            with clock(days_ago(day - 1, 0)):
                trust.evaluate(now=timezone.now())
    refund_grant.refresh_from_db()
    assert refund_grant.tier == Tier.EXECUTOR
    return refund_grant, policy


def test_replayed_unchanged_it_finds_the_recorded_promotion_at_its_moment_and_every_verdict(promoted):
    _, policy = promoted
    outcome = engine.replay(changes.of_policy(policy, policy), days=DAYS)
    (move,) = outcome.moves
    (recorded,) = outcome.recorded_moves
    assert (move.from_tier, move.to_tier, move.at) == ("contributor", "executor", recorded.at)
    assert recorded.at == days_ago(3, 0)  # the end of the third day: 12 decisions, all approvals
    assert all(before == after for before, after in outcome.tally.moved)


def test_a_lower_minimum_promotes_two_days_earlier_and_auto_approves_from_then(promoted):
    change = changes.proposed("policy", "finance", {"min_decisions": "4"})
    result = report.simulate(change, actor=Actor.system("test"), days=DAYS).as_dict()
    (move,) = result["tier_changes"]["replayed"]
    assert (move["from"], move["to"], move["reason"]) == ("contributor", "executor", "promoted")
    assert move["at"] == days_ago(5, 0).isoformat()
    # Days 5 and 4 ago: eight refunds Finance approved would have run on their own.
    new = result["newly_auto_approved"]
    assert new["count"] == 8 and new["cost"]["count"] == 0
    assert result["lead_hours"]["decisions_saved"] == 8
    assert result["lead_hours"]["saved"] == 4.0  # each decided half an hour after it was proposed


def test_thresholds_of_100_percent_still_promote_a_record_of_approvals_only_and_never_demote_it(promoted):
    change = changes.proposed("policy", "finance", {"promote_threshold": "1", "demote_threshold": "1"})
    moves = report.simulate(change, actor=Actor.system("test"), days=DAYS).as_dict()["tier_changes"]["replayed"]
    # 100 % approvals meet a 100 % threshold: promoted as recorded, then nothing is under it.
    assert [(m["from"], m["to"]) for m in moves] == [("contributor", "executor")]


def test_daily_limits_are_recounted_a_blocked_proposal_using_up_nothing(promoted):
    refund_grant, _ = promoted
    change = changes.proposed("grant", f"{refund_grant.agent.slug}:payments.refund", {"max_actions_per_day": "3"})
    result = report.simulate(change, actor=Actor.system("test"), days=DAYS).as_dict()
    # The fourth refund of each of the seven days is over the limit; the first three still fit.
    blocked = {row["verdict"]: row["replayed"] for row in result["verdicts"]}["blocked"]
    assert blocked == DAYS
    assert all(day["replayed"]["blocked"] == 1 for day in result["per_day"])


def test_a_daily_amount_limit_counts_the_days_total(promoted):
    refund_grant, _ = promoted
    change = changes.proposed("grant", f"{refund_grant.agent.slug}:payments.refund", {"max_amount_per_day": "50"})
    result = report.simulate(change, actor=Actor.system("test"), days=DAYS).as_dict()
    # 20.00 each: the first two fit under 50.00, the third and fourth would make 60.00.
    assert all(day["replayed"]["blocked"] == 2 for day in result["per_day"])


def test_a_replayed_promotion_restarts_the_evidence_so_one_veto_then_demotes(agent, lead):
    """Twelve approved refunds, then one rejected: under a minimum of ten the
    grant is promoted at the end of the first day; the rejected refund would
    have run on its own and been overruled, and the executor's record, which
    starts at its promotion, is that one veto: demoted at the next day's end.
    (Over both tiers it would read 12 of 13, 92 %, above the threshold.)"""
    PromotionPolicy.objects.create(department=agent.department, window_days=7)
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.CONTRIBUTOR)
    for n in range(12):
        approved(proposed(agent, refunds, days_ago(3, 10, n), "20.00"), lead)
    rejected(proposed(agent, refunds, days_ago(2, 10), "20.00"), lead)

    change = changes.proposed("policy", "finance", {"min_decisions": "10"})
    moves = report.simulate(change, actor=Actor.system("test"), days=DAYS).as_dict()["tier_changes"]["replayed"]
    assert [(m["from"], m["to"], m["at"]) for m in moves] == [
        ("contributor", "executor", days_ago(2, 0).isoformat()),
        ("executor", "contributor", days_ago(1, 0).isoformat()),
    ]


def test_the_first_replayed_evaluation_counts_the_policy_window_before_the_first_day(agent, lead):
    """Two approved refunds a day for thirteen days, never evaluated: replaying
    the last eight, the first evaluation (the first day's end) reads the seven
    days before it too: the days before the replay, counted in SQL, bring
    the ten decisions the policy asks for."""
    policy = PromotionPolicy.objects.create(department=agent.department, min_decisions=10, window_days=7)
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.CONTRIBUTOR)
    for day in range(13):
        for n in range(2):
            approved(proposed(agent, refunds, days_ago(day, 10, n), "20.00"), lead)
    (move,) = engine.replay(changes.of_policy(policy, policy), days=8).moves
    assert (move.from_tier, move.to_tier, move.at) == ("contributor", "executor", days_ago(6, 0))
