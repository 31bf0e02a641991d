"""The paced fleet keeps its agents within their baselines: each proposes at
its own pace, far under the action-rate detector's threshold, and a plan the
policy will block comes at most once per STRAY_EVERY per agent, under the
blocked-proposals detector's five an hour, whatever the dice say."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from agents.models import Grant
from approvals.demo import fleet as simulation
from approvals.demo import organisation as demo
from approvals.demo import scenarios


@pytest.fixture
def fleet(db) -> simulation.Simulation:
    call_command("seed_demo", "--history-days=0", stdout=StringIO(), stderr=StringIO())
    fleet = simulation.Simulation("http://testserver", say=lambda line: None, seed=11)
    fleet.members = {bot.slug: None for bot in demo.BOTS}  # turns only: nothing is proposed here
    return fleet


def test_a_plan_meant_to_be_blocked_comes_at_most_once_per_twenty_minutes_per_agent(fleet):
    start = timezone.now()
    strays = []
    for minute in range(0, 120):
        now = start + timedelta(minutes=minute)
        for slug in ("refund-bot", "reply-drafter", "crm-janitor"):
            plan = fleet._fitting_plan(slug, now)
            if plan is not None and (plan.stray or not fleet._within_daily_limits(plan, now)):
                strays.append((slug, minute))
    per_agent = {slug: [m for s, m in strays if s == slug] for slug in ("refund-bot", "reply-drafter", "crm-janitor")}
    for slug, minutes in per_agent.items():
        assert minutes, f"{slug} never strayed: the demo still shows blocked proposals"
        gaps = [b - a for a, b in itertools.pairwise(minutes)]
        assert all(gap >= scenarios.STRAY_EVERY.total_seconds() / 60 for gap in gaps), (slug, minutes)
        assert len(minutes) * 60 / 120 < settings.BLOCKED_ALERT_AT


def test_a_plan_past_the_days_amount_is_held_back_like_a_stray(fleet):
    Grant.objects.filter(agent__slug="refund-bot", action_type__slug="payments.refund").update(
        max_amount_per_day=Decimal("50.00")  # today's seeded refunds used it up
    )
    now = timezone.now()
    plans = [fleet._fitting_plan("refund-bot", now + timedelta(seconds=n)) for n in range(30)]
    refunds = [plan for plan in plans if plan is not None and plan.action_type == "payments.refund"]
    assert len(refunds) <= 1  # the one stray allowed in the window; drafts otherwise


def test_no_agent_paces_near_the_action_rate_threshold():
    window_hours = settings.ANOMALY_WINDOW_MINUTES / 60
    for bot in demo.BOTS:
        # Its turns are at least (1 - JITTER) / pace apart: at most this many fall in one window.
        most_in_a_window = bot.pace_per_hour * window_hours / (1 - simulation.JITTER) + 1
        assert most_in_a_window < 10, bot.slug  # the detector's floor: ten in a window, at the least
