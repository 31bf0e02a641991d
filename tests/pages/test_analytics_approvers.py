"""Decision analytics (approvals/reads/analytics.py): per approver the load, the
median time to decision and approvals per hour, and the rubber-stamp
signals: approvals faster than their payload can be read, long streaks
without a rejection, bulk approvals. Scoped to the department."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.demo.history import clock
from approvals.models import Department, Risk
from approvals.reads import analytics

pytestmark = pytest.mark.django_db


def test_reading_time_grows_with_the_payload():
    short = analytics.reading_seconds({"a": 1})
    long = analytics.reading_seconds({"body": "x" * 500})
    assert short == pytest.approx(analytics.READING_BASE_SECONDS + 7 / analytics.READING_CHARS_PER_SECOND)
    assert long > short + 19


@pytest.fixture
def at():
    start = timezone.now() - timedelta(days=2)

    def _at(seconds: float):
        return clock(start + timedelta(seconds=seconds))

    return _at


def test_a_careful_approver_is_not_flagged(propose, lead, department, at):
    for n in range(3):
        with at(n * 600):
            action = propose(Tier.CONTRIBUTOR, Risk.LOW)
        with at(n * 600 + 120):  # two minutes later: time to read it
            services.approve(action.pk, lead)
    (person,) = analytics.approvers(department, timezone.now() - timedelta(days=30))
    assert (person.decisions, person.approvals, person.too_fast, person.bulk_runs) == (3, 3, 0, [])
    assert person.median_seconds == pytest.approx(120)
    assert person.approvals_per_hour in (3.0, 1.5)  # three approvals in one clock hour, or across two
    assert person.signals == []


def test_an_approval_faster_than_its_payload_can_be_read_is_flagged(propose, lead, department, at):
    with at(0):
        action = propose(Tier.CONTRIBUTOR, Risk.LOW, payload={"note": "y" * 400})
    with at(3):
        services.approve(action.pk, lead)
    (person,) = analytics.approvers(department, timezone.now() - timedelta(days=30))
    assert person.too_fast == 1 and person.flagged == 1
    assert "1 approvals faster than their preview can be read" in person.signals


def test_approvals_seconds_apart_after_a_long_wait_are_a_bulk_approval(propose, lead, department, at):
    actions = []
    with at(0):
        for _ in range(analytics.BULK_SIZE):
            actions.append(propose(Tier.CONTRIBUTOR, Risk.LOW))
    for n, action in enumerate(actions):
        with at(3600 + n * 2):  # an hour later, one every two seconds
            services.approve(action.pk, lead)
    (person,) = analytics.approvers(department, timezone.now() - timedelta(days=30))
    assert person.bulk_runs == [analytics.BULK_SIZE]
    # The first could have been read all hour; the others came two seconds after the one before.
    assert person.too_fast == analytics.BULK_SIZE - 1
    assert person.flagged == analytics.BULK_SIZE


def test_a_rejection_breaks_the_streak(propose, lead, department, at, monkeypatch):
    monkeypatch.setattr(analytics, "STREAK_FLAG", 3)
    verdicts = ["approve", "approve", "reject", "approve", "approve", "approve"]
    for n, verdict in enumerate(verdicts):
        with at(n * 600):
            action = propose(Tier.CONTRIBUTOR, Risk.LOW)
        with at(n * 600 + 300):
            if verdict == "approve":
                services.approve(action.pk, lead)
            else:
                services.reject(action.pk, lead, reason="Not this one.")
    (person,) = analytics.approvers(department, timezone.now() - timedelta(days=30))
    assert (person.longest_streak, person.rejections) == (3, 1)
    assert "3 approvals in a row without a rejection" in person.signals


def test_only_the_departments_own_decisions_count(propose, lead, department, at):
    with at(0):
        action = propose(Tier.CONTRIBUTOR, Risk.LOW)
    with at(60):
        services.approve(action.pk, lead)
    other = Department.objects.create(name="Elsewhere", slug="elsewhere")
    assert analytics.approvers(other, timezone.now() - timedelta(days=30)) == []
    assert [p.decisions for p in analytics.approvers(department, timezone.now() - timedelta(days=30))] == [1]
