"""The demo tells its story: seed_demo writes thirty days of history through
the real services, the simulated fleet then proposes within its baselines,
and only the scripted anomaly raises an alert, when its moment comes.

The fleet is driven tick by tick on a set clock (approvals.demo.history.clock)
through the real agent API (httpx's WSGI transport into Django), and the
detectors run at each tick, as the embedded scheduler runs them every minute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from io import StringIO
from typing import Any

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone

from agents.models import Agent, AgentStatus, Grant, Tier
from approvals.autonomy import metrics
from approvals.demo import fleet as simulation
from approvals.demo import history as demo_history
from approvals.demo import scenarios
from approvals.models import Action, Alert, AlertKind, Decision, DecisionVerdict, Department, TierChange
from approvals.monitoring import detectors
from approvals.reads import analytics
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent

pytestmark = pytest.mark.embedded  # the history on SQLite is what ./run writes


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def seeded(db) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO())
    return out.getvalue()


def in_process() -> httpx.WSGITransport:
    """The agent API as a real HTTP exchange, served in this thread (and this test's transaction):
    as Django's test client does, the request signals leave the connection open."""
    handler = WSGIHandler()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = handler(environ, start_response)
            body = list(response)
            response.close()
            return body
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)

    return httpx.WSGITransport(app=app)


@pytest.fixture
def fleet(seeded) -> Iterator[simulation.Simulation]:
    fleet = simulation.Simulation("http://testserver", say=lambda line: None, seed=5, transport=in_process())
    fleet.start()
    yield fleet
    fleet.stop()


def open_alerts() -> list[tuple[str, str | None]]:
    return sorted(
        (alert.kind, alert.agent.slug if alert.agent else None) for alert in Alert.objects.filter(acknowledged_at=None)
    )


def test_the_history_tells_the_story_and_leaves_nothing_to_alert_on(seeded):
    # The refund assistant was promoted by the trust rule on its record, and its chart has points.
    grant = Grant.objects.get(agent__slug="refund-bot", action_type__slug="payments.refund")
    promoted = TierChange.objects.get(grant=grant)
    assert (promoted.from_tier, promoted.to_tier, promoted.reason, promoted.automatic) == (
        Tier.CONTRIBUTOR,
        Tier.EXECUTOR,
        "promoted",
        True,
    )
    assert promoted.metrics["approval"]["trials"] >= 50 and promoted.metrics["approval"]["rate"] >= 0.95
    assert grant.tier == Tier.EXECUTOR
    days = metrics.daily(Action.objects.filter(agent=grant.agent), 30)
    assert sum(day.proposals > 0 for day in days) >= 28
    assert sum(day.approval.trials > 0 for day in days) >= 25

    # Its draft replies were demoted after Support rejected them.
    demoted = TierChange.objects.get(grant__agent__slug="refund-bot", grant__action_type__slug="support.draft_reply")
    assert (demoted.from_tier, demoted.to_tier, demoted.reason) == (Tier.EXECUTOR, Tier.CONTRIBUTOR, "demoted")
    drafts = Action.objects.filter(agent__slug="refund-bot", action_type__slug="support.draft_reply")
    assert drafts.filter(status=Status.REJECTED, created_at__lt=demoted.created_at).count() >= 3

    # The lead router was suspended by the circuit breaker and resumed by a lead.
    suspended = AuditEvent.objects.get(verb="agent.suspended")
    resumed = AuditEvent.objects.get(verb="agent.resumed")
    assert (suspended.actor_label, resumed.actor_label) == ("circuit breaker", "leo")
    assert suspended.created_at < resumed.created_at < timezone.now() - timedelta(days=1)
    assert Agent.objects.get(slug="lead-router").status == AgentStatus.ACTIVE
    assert Action.objects.filter(agent__slug="lead-router", status=Status.FAILED).count() == 3

    # A rolled-back refund, vendor payments approved by two people, shadow-mode agreement.
    assert Action.objects.get(status=Status.ROLLED_BACK).action_type.slug == "payments.refund"
    paid = Action.objects.filter(action_type__slug="payments.vendor_payment", status=Status.SUCCEEDED).first()
    approvers = set(paid.decisions.filter(verdict=DecisionVerdict.APPROVE).values_list("user__username", flat=True))
    assert approvers == {"fiona", "marcus"}
    marks = Decision.objects.filter(verdict__in=(DecisionVerdict.WOULD_APPROVE, DecisionVerdict.WOULD_REJECT))
    agreed = marks.filter(verdict=DecisionVerdict.WOULD_APPROVE).count()
    assert marks.count() >= 50 and 0.7 < agreed / marks.count() < 0.95

    # The finance dashboard's analytics flag the approver who rubber-stamps, not the careful one.
    finance = Department.objects.get(slug="finance")
    found = {a.name: a for a in analytics.approvers(finance, timezone.now() - timedelta(days=30))}
    marcus, fiona = found["Marcus Webb"], found["Fiona Hart"]
    assert marcus.too_fast > 10 and marcus.largest_bulk >= 14 and marcus.flagged >= marcus.too_fast
    assert fiona.signals == [] and fiona.median_seconds > marcus.median_seconds

    # Nothing of the past waits, the audit chain verifies, and no detector finds anything.
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    past = Action.objects.filter(created_at__lt=midnight)
    assert past.count() > 500
    assert not past.filter(status__in=(Status.PENDING, Status.APPROVED, Status.DISPATCHING)).exists()
    call_command("verify_audit", stdout=StringIO())  # raises CommandError on a broken chain
    detectors.run(timezone.now())
    assert open_alerts() == []


def test_the_fleet_stays_calm_until_the_scripted_anomaly_raises_exactly_one_alert(fleet):
    start = timezone.now()
    before = Action.objects.count()

    def minute(n: int) -> None:
        moment = start + timedelta(minutes=n)
        with demo_history.clock(moment):
            fleet.tick(moment)
            detectors.run(moment)

    loop_starts = int(scenarios.LOOP_AFTER.total_seconds() // 60)
    for n in range(loop_starts + 1):  # at its minute the loop has only begun: one proposal
        minute(n)
        assert open_alerts() == [], f"minute {n}"
    assert Action.objects.count() > before  # the fleet did propose meanwhile

    for n in range(loop_starts + 1, 20):
        minute(n)
        assert open_alerts() == [(AlertKind.ACTION_RATE, scenarios.LOOP_AGENT)], f"minute {n}"
    assert fleet.tally["error"] == 0


def test_the_paced_fleet_without_its_anomaly_stays_quiet_for_an_hour(seeded):
    fleet = simulation.Simulation("http://testserver", say=lambda line: None, seed=9, transport=in_process())
    fleet.anomaly = False
    fleet.start()
    try:
        start = timezone.now()
        for n in range(0, 60, 2):
            moment = start + timedelta(minutes=n)
            with demo_history.clock(moment):
                fleet.tick(moment)
                detectors.run(moment)
        assert open_alerts() == [] or {kind for kind, _ in open_alerts()} == {AlertKind.PAST_SLA}
    finally:
        fleet.stop()
