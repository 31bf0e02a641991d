"""An observer's shadowed proposals, replayed at executor: its leads' marks
say what they thought, so a "would reject" is counted as a cost."""

from __future__ import annotations

import pytest

from agents.models import Tier
from approvals import services
from approvals.demo.history import clock
from approvals.replay import changes, report
from audit.log import Actor
from tests.support.replay_histories import days_ago, grant, proposed, refund_type

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def test_a_shadowed_refund_its_lead_would_have_rejected_is_the_cost_of_executor(agent, lead):
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.OBSERVER)
    for n, (amount, would_approve) in enumerate([("30.00", True), ("45.00", False), ("60.00", True)]):
        action = proposed(agent, refunds, days_ago(1, 10, n), amount)
        assert action.status == "shadowed"
        with clock(days_ago(1, 12, n)):
            services.mark_shadow(action.pk, lead, would_approve=would_approve)
    proposed(agent, refunds, days_ago(1, 11), "10.00")  # never marked

    change = changes.proposed("grant", "refund-bot:payments.refund", {"tier": "executor"})
    new = report.simulate(change, actor=Actor.system("test"), days=7).as_dict()["newly_auto_approved"]
    assert new["count"] == 4
    assert new["cost"] == {"count": 1, "money": {"EUR": "45.00"}}
    assert new["by_fate"]["approved"]["count"] == 2
    assert new["by_fate"]["undecided"]["count"] == 1
