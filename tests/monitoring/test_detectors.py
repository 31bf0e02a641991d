"""Each detector on synthetic data: the traffic that trips it, and the traffic
just short of it that does not."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.models import Agent, AgentStatus
from approvals.models import Alert, AlertKind, AlertSeverity, PromotionPolicy
from approvals.monitoring import detectors
from tests.support import monitoring_records as records
from tests.support.factories import AgentFactory

pytestmark = pytest.mark.django_db


def registered_ago(agent: Agent, age: timedelta) -> None:
    Agent.objects.filter(pk=agent.pk).update(created_at=timezone.now() - age)


def kinds(findings: list[detectors.Finding]) -> list[str]:
    return [finding.kind for finding in findings]


# ---------------------------------------------------------------- action rate


@pytest.fixture
def steady_agent(agent):
    """Registered a day ago, proposing about 2 actions per 15 minutes since."""
    registered_ago(agent, timedelta(days=1))
    records.actions(agent, 190, at=timezone.now() - timedelta(minutes=16), spread=timedelta(hours=23, minutes=40))
    return agent


def test_it_alerts_when_an_agent_acts_at_the_policys_multiple_of_its_own_pace(steady_agent):
    records.actions(steady_agent, 20, spread=timedelta(minutes=10))

    [finding] = detectors.action_rate(timezone.now())

    assert finding.kind == AlertKind.ACTION_RATE and finding.agent_id == steady_agent.pk
    assert finding.severity == AlertSeverity.WARNING and not finding.suspend
    assert "proposed 20 actions in the last 15 minutes; its usual pace is about 2 per 15 minutes" in finding.message


def test_it_does_not_alert_just_under_the_multiple(steady_agent):
    records.actions(steady_agent, 19, spread=timedelta(minutes=10))

    assert detectors.action_rate(timezone.now()) == []


def test_the_departments_policy_sets_the_multiple(steady_agent):
    PromotionPolicy.objects.create(department=steady_agent.department, anomaly_multiplier=Decimal(3))
    records.actions(steady_agent, 6, spread=timedelta(minutes=10))

    assert kinds(detectors.action_rate(timezone.now())) == [AlertKind.ACTION_RATE]


def test_an_agent_without_history_is_held_to_one_action_a_window(agent):
    records.actions(agent, 9, spread=timedelta(minutes=10))
    assert detectors.action_rate(timezone.now()) == []

    records.actions(agent, 1)
    assert kinds(detectors.action_rate(timezone.now())) == [AlertKind.ACTION_RATE]


def test_it_suspends_the_agent_when_its_settings_ask(steady_agent, django_capture_on_commit_callbacks):
    Agent.objects.filter(pk=steady_agent.pk).update(suspend_on_anomaly=True)
    records.actions(steady_agent, 40, spread=timedelta(minutes=10))

    with django_capture_on_commit_callbacks(execute=True):
        detectors.run()

    steady_agent.refresh_from_db()
    assert steady_agent.status == AgentStatus.SUSPENDED
    alert = Alert.objects.get(kind=AlertKind.ACTION_RATE)
    assert alert.severity == AlertSeverity.CRITICAL and "Countersign suspended it" in alert.message


# ---------------------------------------------------------------- dispatch errors


def test_it_alerts_when_most_dispatch_attempts_fail(agent):
    records.dispatch_attempts(agent, ["failed", "retrying", "failed", "succeeded", "failed"])

    [finding] = detectors.dispatch_errors(timezone.now())

    assert finding.kind == AlertKind.DISPATCH_ERRORS and finding.agent_id == agent.pk
    assert "4 of the 5 attempts in the last 60 minutes" in finding.message and "(80 %)" in finding.message


def test_it_does_not_alert_on_a_few_failures_among_successes(agent):
    records.dispatch_attempts(agent, ["failed", "succeeded", "succeeded", "succeeded", "succeeded"])

    assert detectors.dispatch_errors(timezone.now()) == []


def test_it_does_not_alert_on_too_few_attempts_or_old_ones(agent):
    records.dispatch_attempts(agent, ["failed"] * 4)
    records.dispatch_attempts(agent, ["failed"] * 5, finished_at=timezone.now() - timedelta(hours=2))

    assert detectors.dispatch_errors(timezone.now()) == []


# ---------------------------------------------------------------- blocked proposals


def blocked(agent: Agent, count: int, code: str = "not_granted") -> None:
    records.actions(agent, count, status="blocked", verdict="blocked", verdict_code=code)


def test_it_alerts_on_repeated_out_of_scope_proposals(agent):
    blocked(agent, 3, "not_granted")
    blocked(agent, 2, "limit_exceeded")

    [finding] = detectors.blocked_proposals(timezone.now())

    assert finding.kind == AlertKind.BLOCKED_PROPOSALS and not finding.suspend
    assert "tried 5 times" in finding.message and "3 without permission" in finding.message


def test_it_ignores_blocks_that_are_not_the_agents_doing_and_a_few_slips(agent):
    blocked(agent, 4, "not_granted")
    blocked(agent, 10, "gateway_paused")
    blocked(agent, 10, "agent_suspended")

    assert detectors.blocked_proposals(timezone.now()) == []


def test_it_suspends_an_agent_at_the_safety_limit(agent, django_capture_on_commit_callbacks):
    blocked(agent, 20)

    with django_capture_on_commit_callbacks(execute=True):
        detectors.run()

    agent.refresh_from_db()
    assert agent.status == AgentStatus.SUSPENDED
    alert = Alert.objects.get(kind=AlertKind.BLOCKED_PROPOSALS)
    assert alert.severity == AlertSeverity.CRITICAL and "safety limit of 20" in alert.message


# ---------------------------------------------------------------- approval rate


def decided(agent: Agent, count: int, status: str) -> None:
    now = timezone.now()
    records.actions(agent, count, at=now - timedelta(hours=2), status=status, decided_at=now - timedelta(hours=1))


def test_it_alerts_when_people_reject_most_of_what_an_agent_proposes(agent):
    decided(agent, 2, "succeeded")
    decided(agent, 8, "rejected")

    [finding] = detectors.low_approval(timezone.now())

    assert finding.kind == AlertKind.LOW_APPROVAL and finding.agent_id == agent.pk
    assert "10 times over the last 7 days and agreed with it only 2 times (20%), under the 90%" in finding.message


def test_it_does_not_alert_when_the_record_is_good_or_too_thin(agent):
    decided(agent, 10, "succeeded")
    thin = AgentFactory(department=agent.department)
    decided(thin, 4, "rejected")  # too few to judge a new agent on

    assert detectors.low_approval(timezone.now()) == []


# ---------------------------------------------------------------- past the SLA


def test_it_alerts_on_a_queue_with_actions_past_their_deadline(agent):
    records.actions(agent, 3, sla_deadline=timezone.now() - timedelta(hours=3))
    records.actions(agent, 2, sla_deadline=timezone.now() + timedelta(hours=1))

    [finding] = detectors.past_sla(timezone.now())

    assert finding.kind == AlertKind.PAST_SLA
    assert finding.department_id == agent.department_id and finding.agent_id is None
    assert "3 actions are waiting in the Finance queue" in finding.message and "3\xa0hours" in finding.message


def test_it_does_not_alert_on_a_queue_within_its_deadlines(agent):
    records.actions(agent, 2, sla_deadline=timezone.now() + timedelta(hours=1))
    records.actions(agent, 2, status="rejected", sla_deadline=timezone.now() - timedelta(hours=1))

    assert detectors.past_sla(timezone.now()) == []


# ---------------------------------------------------------------- budget


def with_budget(agent: Agent, *, tokens: int | None = None, cost: str | None = None) -> None:
    Agent.objects.filter(pk=agent.pk).update(
        daily_token_budget=tokens, daily_cost_budget=Decimal(cost) if cost else None
    )


def test_it_alerts_when_todays_tokens_pass_the_agents_budget(agent):
    with_budget(agent, tokens=10_000)
    records.actions(agent, 2, context={"tokens_used": 6000})

    [finding] = detectors.over_budget(timezone.now())

    assert finding.kind == AlertKind.OVER_BUDGET and finding.agent_id == agent.pk
    assert "12,000 tokens against a daily budget of 10,000" in finding.message
    assert finding.scope == timezone.localdate().isoformat()


def test_it_alerts_when_todays_cost_passes_the_agents_budget(agent):
    with_budget(agent, cost="5.00")
    records.actions(agent, 3, context={"cost": 1.75})

    [finding] = detectors.over_budget(timezone.now())

    assert "a cost of 5.25 against a daily budget of 5.00" in finding.message


def test_it_does_not_alert_within_budget_or_without_one(agent):
    with_budget(agent, tokens=10_000, cost="5.00")
    records.actions(agent, 1, context={"tokens_used": 9000, "cost": "4.99"})
    records.actions(agent, 1, context={"tokens_used": "a lot", "cost": {"usd": 99}})  # not numbers: skipped
    records.actions(agent, 1, at=timezone.now() - timedelta(days=2), context={"tokens_used": 99_999})
    unbudgeted = AgentFactory(department=agent.department)
    records.actions(unbudgeted, 1, context={"tokens_used": 10**9})

    assert detectors.over_budget(timezone.now()) == []


# ---------------------------------------------------------------- reviews


def test_it_alerts_on_an_overdue_review(agent):
    Agent.objects.filter(pk=agent.pk).update(next_review_on=timezone.localdate() - timedelta(days=1))

    [finding] = detectors.review_overdue(timezone.now())

    assert finding.kind == AlertKind.REVIEW_OVERDUE and finding.agent_id == agent.pk
    assert "review was due on" in finding.message


def test_it_does_not_alert_on_a_review_due_today_or_a_retired_agent(agent):
    Agent.objects.filter(pk=agent.pk).update(next_review_on=timezone.localdate())
    AgentFactory(status=AgentStatus.RETIRED, next_review_on=timezone.localdate() - timedelta(days=9))

    assert detectors.review_overdue(timezone.now()) == []


def test_a_new_agent_is_due_for_review_in_a_month(agent):
    assert agent.next_review_on == timezone.localdate() + timedelta(days=30)


# ---------------------------------------------------------------- the run


def test_one_failing_detector_does_not_stop_the_others(agent, monkeypatch, django_capture_on_commit_callbacks):
    def broken(now):
        raise RuntimeError("boom")

    monkeypatch.setattr(detectors, "DETECTORS", (broken, detectors.past_sla))
    records.actions(agent, 1, sla_deadline=timezone.now() - timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        assert detectors.run() == 1

    assert Alert.objects.filter(kind=AlertKind.PAST_SLA).count() == 1


def test_beat_runs_the_detectors_every_minute(settings, agent, django_capture_on_commit_callbacks):
    from approvals import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["detect-anomalies"]
    assert (entry["task"], entry["schedule"]) == ("approvals.tasks.detect_anomalies", timedelta(minutes=1))
    records.actions(agent, 1, sla_deadline=timezone.now() - timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.detect_anomalies.apply().get() == 1

    assert Alert.objects.filter(kind=AlertKind.PAST_SLA).exists()
