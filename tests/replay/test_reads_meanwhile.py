"""On a committed record (no transaction around the replay, as in the page,
the admin and the command), the leads' marks and the median time to
decision are read on connections of their own while the replay reads and
walks the rows; inside a caller's transaction, whose rows no other
connection sees, on the replay's own. The same answers either way: three
approvals after one, two and four hours make a median of two hours; a
shadowed refund its lead would have rejected is the cost of executor."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest

from agents.models import Tier
from approvals import services
from approvals.demo.history import clock
from approvals.replay import changes, history, report
from audit.log import Actor
from tests.support.replay_histories import approved, days_ago, grant, proposed, refund_type


def replayed_with_three_approvals(agent, lead):
    """The lead hours of a replay over three refunds approved after one, four and two hours, and
    whether the median was found on a connection of its own."""
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal("100.00"))
    for n, hours in enumerate([1, 4, 2]):
        action = proposed(agent, refunds, days_ago(n + 1, 10), "250.00")
        approved(action, lead, after=timedelta(hours=hours))
    change = changes.proposed("grant", "refund-bot:payments.refund", {"tier": "contributor"})
    with mock.patch.object(history, "_on_a_connection_of_its_own", wraps=history._on_a_connection_of_its_own) as own:
        hours = report.simulate(change, actor=Actor.system("test"), days=7).as_dict()["lead_hours"]
    return hours, own.called


@pytest.mark.django_db(transaction=True)
def test_on_a_committed_record_the_median_found_meanwhile_is_the_measured_one(agent, lead):
    hours, on_its_own = replayed_with_three_approvals(agent, lead)
    assert on_its_own
    assert hours["median_minutes_to_decision"] == 120.0


@pytest.mark.django_db
@pytest.mark.embedded
def test_inside_a_callers_transaction_the_median_is_found_on_the_replays_connection(agent, lead):
    hours, on_its_own = replayed_with_three_approvals(agent, lead)
    assert not on_its_own
    assert hours["median_minutes_to_decision"] == 120.0


@pytest.mark.django_db(transaction=True)
def test_on_a_committed_record_the_marks_read_meanwhile_are_the_leads(agent, lead):
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.OBSERVER)
    for n, (amount, would_approve) in enumerate([("30.00", True), ("45.00", False), ("60.00", True)]):
        action = proposed(agent, refunds, days_ago(1, 10, n), amount)
        with clock(days_ago(1, 12, n)):
            services.mark_shadow(action.pk, lead, would_approve=would_approve)
    change = changes.proposed("grant", "refund-bot:payments.refund", {"tier": "executor"})
    with mock.patch.object(history, "_on_a_connection_of_its_own", wraps=history._on_a_connection_of_its_own) as own:
        new = report.simulate(change, actor=Actor.system("test"), days=7).as_dict()["newly_auto_approved"]
    assert own.call_count == 2  # the marks and the median
    assert new["cost"] == {"count": 1, "money": {"EUR": "45.00"}}
    assert new["by_fate"]["approved"]["count"] == 2
