"""Raising a grant's auto-approve limit, replayed over a week whose answer is
known by construction: small refunds ran on their own, eight large ones
waited for Finance, who approved six and rejected two. Raising the limit
over all of them auto-approves the eight, and the cost is exactly the two
rejected refunds, with their money."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from agents.models import Tier
from approvals.models import PromotionPolicy
from approvals.replay import changes, report
from audit.log import Actor
from audit.models import AuditEvent
from tests.support.replay_histories import approved, days_ago, grant, proposed, refund_type, rejected

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

LARGE = ["250.00", "300.00", "320.00", "400.00", "180.00", "450.00", "220.00", "260.00"]
REJECTED = {"300.00", "450.00"}


@pytest.fixture
def week(agent, lead):
    # A policy that never demotes, so the limit's own effect is seen alone
    # (the last test keeps the default's, and sees the demotion it brings).
    PromotionPolicy.objects.create(department=agent.department, demote_threshold=Decimal(0))
    refunds = refund_type()
    refund_grant = grant(agent, refunds, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal("100.00"))
    for day in range(7):
        for n in range(3):
            proposed(agent, refunds, days_ago(day, 9, n), "40.00")  # auto-approved
    for n, amount in enumerate(LARGE):
        action = proposed(agent, refunds, days_ago(n % 7, 14, n), amount)
        assert action.verdict == "pending"
        if amount in REJECTED:
            rejected(action, lead, after=timedelta(hours=2))
        else:
            approved(action, lead, after=timedelta(hours=1))
    return refund_grant


def simulate(week, **values):
    change = changes.proposed("grant", f"{week.agent.slug}:{week.action_type.slug}", values)
    return report.simulate(change, actor=Actor.system("test"), days=7)


def test_it_auto_approves_every_large_refund_and_counts_exactly_the_two_rejected_as_the_cost(week):
    result = simulate(week, auto_approve_max_amount="500").as_dict()

    assert result["proposals"] == 21 + 8
    verdicts = {row["verdict"]: (row["recorded"], row["replayed"]) for row in result["verdicts"]}
    assert verdicts["approved"] == (21, 29)
    assert verdicts["pending"] == (8, 0)
    new = result["newly_auto_approved"]
    assert new["count"] == 8
    assert new["cost"] == {"count": 2, "money": {"EUR": "750.00"}}
    assert new["by_fate"]["rejected"] == {"count": 2, "money": {"EUR": "750.00"}}
    assert new["by_fate"]["approved"]["count"] == 6


def test_the_lead_hours_saved_are_the_measured_times_to_decision(week):
    hours = simulate(week, auto_approve_max_amount="500").as_dict()["lead_hours"]
    # Six approvals after an hour, two rejections after two.
    assert hours["decisions_saved"] == 8
    assert hours["saved"] == 10.0
    assert hours["decisions_added"] == 0
    assert hours["net_saved"] == 10.0


def test_a_limit_raised_only_to_three_hundred_takes_in_the_one_rejected_refund_under_it(week):
    new = simulate(week, auto_approve_max_amount="300").as_dict()["newly_auto_approved"]
    assert new["count"] == 5  # 250, 300, 180, 220, 260
    assert new["cost"] == {"count": 1, "money": {"EUR": "300.00"}}


def test_it_writes_nothing_but_its_own_audit_event(week):
    before = AuditEvent.objects.count()
    week.refresh_from_db()
    simulate(week, auto_approve_max_amount="500")
    (event,) = AuditEvent.objects.order_by("-id")[: AuditEvent.objects.count() - before]
    assert event.verb == "policy.simulated"
    assert event.after["change"]["edits"] == {"auto_approve_max_amount": {"now": "100.00", "proposed": "500"}}
    assert event.after["summary"]["cost"] == 2
    stored = type(week).objects.get(pk=week.pk)
    assert stored.auto_approve_max_amount == Decimal("100.00")


def test_under_the_default_policy_the_first_overruled_refund_would_have_demoted_the_grant(week):
    PromotionPolicy.objects.filter(department=week.agent.department).delete()
    result = simulate(week, auto_approve_max_amount="500").as_dict()
    (move,) = result["tier_changes"]["replayed"]
    # The 450.00 refund, five days ago, would have run on its own and been overruled: 0 of 1, a
    # record whose whole interval is under 90 %, demotes at that day's end.
    assert (move["from"], move["to"], move["reason"]) == ("executor", "contributor", "demoted")
    assert move["at"] == days_ago(4, 0).isoformat()
    # From then on every refund waits for a human again, as recorded.
    new = result["newly_auto_approved"]
    assert new["cost"]["count"] == 1
