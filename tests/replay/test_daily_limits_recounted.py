"""The day's counters are recounted as the replay goes, as the gateway counts
them: a proposal the change blocks uses up nothing of the day's limits."""

from __future__ import annotations

import pytest

from agents.models import Tier
from approvals.replay import changes, report
from audit.log import Actor
from tests.support.replay_histories import days_ago, grant, proposed, refund_type

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_a_refund_blocked_by_the_new_per_action_limit_leaves_the_days_amount_to_the_others(agent):
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.CONTRIBUTOR)
    for minute, amount in enumerate(["20.00", "200.00", "20.00", "20.00"]):
        proposed(agent, refunds, days_ago(1, 10, minute), amount)
    values = {"max_amount_per_action": "100", "max_amount_per_day": "70"}
    result = report.simulate(changes.proposed("grant", "refund-bot:payments.refund", values), actor=Actor.system("t"))
    verdicts = {row["verdict"]: row["replayed"] for row in result.as_dict()["verdicts"]}
    # 20 + 20 + 20 = 60 fits under 70: only the 200.00 refund is blocked, by the per-action limit.
    assert (verdicts["blocked"], verdicts["pending"]) == (1, 3)
