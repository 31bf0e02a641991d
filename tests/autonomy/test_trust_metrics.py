"""approvals.autonomy.metrics against hand-counted records: what counts as a human
decision, the Wilson interval, the median time to decision (percentile_cont
on PostgreSQL, ranked rows elsewhere), shadow agreement, the window, and the
grouping per grant, agent and department."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Tier
from approvals.autonomy import metrics
from approvals.autonomy.metrics import Metrics, Rate
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory
from tests.support.trust_records import actions, shadow_marks

pytestmark = pytest.mark.django_db

A_MONTH_AGO = timezone.now() - timedelta(days=30)


@pytest.fixture
def refunds(agent):
    return GrantFactory(agent=agent, action_type=ActionTypeFactory(slug="payments.refund"), tier_changed_at=A_MONTH_AGO)


@pytest.fixture
def triage(agent):
    return GrantFactory(
        agent=agent,
        action_type=ActionTypeFactory(slug="tickets.triage"),
        tier=Tier.OBSERVER,
        tier_changed_at=A_MONTH_AGO,
    )


@pytest.fixture
def record(refunds, lead):
    """The hand-counted week of payments.refund (the comments are the count)."""
    minutes = iter([1, 2, 3, 4, 5, 6, 7, 60])  # time to decision of the 8 human decisions: median 4.5 min
    for status in ("approved", "succeeded", "succeeded", "succeeded", "failed", "rolled_back"):
        actions(refunds, 1, status=status, decided_after=timedelta(minutes=next(minutes)))  # 6 human approvals
    for _ in range(2):
        actions(refunds, 1, status="rejected", decided_after=timedelta(minutes=next(minutes)))  # 2 rejections
    for status in ("pending", "expired", "cancelled", "blocked"):
        actions(refunds, 1, status=status)  # no decision
    actions(refunds, 3, status="succeeded", verdict="approved")  # auto-approved, unopposed: no decision
    actions(refunds, 1, status="rejected", verdict="approved")  # 1 veto: against
    actions(refunds, 1, status="rolled_back", verdict="approved")  # rollbacks of auto-approvals: against
    actions(refunds, 1, status="rollback_requested", verdict="approved")
    actions(refunds, 5, status="succeeded", created_at=timezone.now() - timedelta(days=8))  # outside the window
    return refunds


def test_it_counts_human_decisions_and_what_overrules_autonomy(record):
    found = metrics.for_grants({record.pk: timezone.now() - timedelta(days=7)})[record.pk]
    assert (found.human_approved, found.human_rejected, found.vetoed, found.rolled_back) == (6, 2, 1, 2)
    assert found.decisions == 11
    assert found.approval == Rate(6, 11)
    assert found.proposals == 18
    assert found.auto_approved == 6


def test_it_takes_the_median_time_to_decision_of_human_decisions_only(record):
    found = metrics.for_grants({record.pk: timezone.now() - timedelta(days=7)})[record.pk]
    assert found.median_decision_seconds == pytest.approx(4.5 * 60)


def test_the_median_of_an_odd_count_is_the_middle_one(refunds):
    for minutes in (1, 9, 3):
        actions(refunds, 1, status="succeeded", decided_after=timedelta(minutes=minutes))
    found = metrics.for_grants({refunds.pk: timezone.now() - timedelta(days=7)})[refunds.pk]
    assert found.median_decision_seconds == pytest.approx(180)


def test_a_grant_counts_only_since_its_last_tier_change(record):
    record.tier_changed_at = timezone.now() - timedelta(minutes=30)  # after every action of the record
    record.save()
    found = metrics.for_grants({record.pk: timezone.now() - timedelta(days=7)})[record.pk]
    assert found == Metrics()


def test_shadow_agreement_counts_the_leads_marks(triage, lead, other_lead):
    shadow_marks(triage, lead, would_approve=3, would_reject=1)
    shadow_marks(triage, other_lead, would_approve=1, would_reject=0)
    found = metrics.for_grants({triage.pk: timezone.now() - timedelta(days=7)})[triage.pk]
    assert found.shadow_agreement == Rate(4, 5)
    assert found.decisions == 0  # shadowed actions are never decided


def test_it_groups_per_agent_and_per_department(record, triage, lead, department):
    shadow_marks(triage, lead, would_approve=2, would_reject=0)
    support = DepartmentFactory(slug="support", leads=[UserFactory()])
    other = GrantFactory(agent=AgentFactory(slug="triage-bot", department=support), tier_changed_at=A_MONTH_AGO)
    actions(other, 4, status="rejected")
    actions(record, 2, status="succeeded", department=support)  # routed to support: support's, still the agent's
    since = timezone.now() - timedelta(days=7)

    by_agent = metrics.for_agents([record.agent_id, other.agent_id], since)
    assert by_agent[record.agent_id].approval == Rate(8, 13)
    assert by_agent[record.agent_id].shadow_agreement == Rate(2, 2)
    assert by_agent[other.agent_id].approval == Rate(0, 4)

    by_department = metrics.for_departments([department.pk, support.pk], since)
    assert by_department[department.pk].approval == Rate(6, 11)
    assert by_department[support.pk].approval == Rate(2, 6)


def test_a_group_without_actions_has_empty_metrics(agent, department):
    since = timezone.now() - timedelta(days=7)
    assert metrics.for_agents([agent.pk], since)[agent.pk] == Metrics()
    assert metrics.for_departments([department.pk], since)[department.pk].approval.value is None


def test_the_daily_series_has_every_day_with_its_counts(refunds):
    today = timezone.now()
    actions(refunds, 3, status="succeeded", created_at=today - timedelta(days=2))
    actions(refunds, 1, status="rejected", created_at=today - timedelta(days=2))
    actions(refunds, 2, status="pending", created_at=today)
    days = metrics.daily(refunds.agent.actions.all(), 7, now=today)
    assert len(days) == 7
    assert days[-1].day == timezone.localdate(today)
    assert [(d.proposals, d.approved, d.against) for d in days] == [(0, 0, 0)] * 4 + [(4, 3, 1), (0, 0, 0), (2, 0, 0)]
    assert days[4].approval == Rate(3, 4)


# ---------------------------------------------------------------- the Wilson interval


@pytest.mark.parametrize(
    ("successes", "trials", "lower", "upper"),
    [
        (5, 10, 0.2366, 0.7634),  # the textbook case
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (95, 100, 0.8882, 0.9785),
    ],
)
def test_the_wilson_interval_matches_published_values(successes, trials, lower, upper):
    interval = Rate(successes, trials).interval
    assert interval == (pytest.approx(lower, abs=1e-4), pytest.approx(upper, abs=1e-4))


def test_a_rate_of_nothing_has_no_value_and_no_interval():
    assert Rate(0, 0).value is None and Rate(0, 0).interval is None


def test_a_rate_refuses_impossible_counts():
    with pytest.raises(ValueError, match="0 ≤ successes ≤ trials"):
        Rate(3, 2)
