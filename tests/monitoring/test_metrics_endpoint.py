"""/metrics: Prometheus' text format, parsed back with prometheus_client's
own parser, and closed to anyone but the configured addresses or token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals.models import AlertKind
from approvals.monitoring import alerts
from tests.support import monitoring_records as records

pytestmark = pytest.mark.django_db


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get(reverse("metrics"), **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_it_reports_actions_queues_decision_times_dispatches_and_alerts(client, agent, lead):
    now = timezone.now()
    records.actions(agent, 3)  # pending
    records.actions(agent, 1, at=now - timedelta(minutes=10), status="rejected", decided_at=now - timedelta(minutes=9))
    records.actions(agent, 1, at=now - timedelta(hours=3), status="succeeded", decided_at=now - timedelta(hours=1))
    records.dispatch_attempts(agent, ["failed", "succeeded", "succeeded"])
    alert = alerts.raise_alert(AlertKind.PAST_SLA, severity="warning", message="Late.", department=agent.department)
    alerts.raise_alert(AlertKind.OVER_BUDGET, severity="warning", message="Spent.", department=agent.department)
    alerts.acknowledge(alert.pk, user=lead)

    samples = scrape(client)

    assert samples[("countersign_actions", (("status", "pending"),))] == 3
    assert samples[("countersign_actions", (("status", "failed"),))] == 3  # the dispatched ones' actions
    assert samples[("countersign_queue_depth", (("department", "finance"),))] == 3
    # Two human decisions: one after a minute, one after two hours.
    assert samples[("countersign_decision_seconds_count", ())] == 2
    assert samples[("countersign_decision_seconds_bucket", (("le", "60.0"),))] == 1
    assert samples[("countersign_decision_seconds_bucket", (("le", "3600.0"),))] == 1
    assert samples[("countersign_decision_seconds_bucket", (("le", "+Inf"),))] == 2
    assert samples[("countersign_decision_seconds_sum", ())] == pytest.approx(60 + 7200, abs=1)
    attempts = "countersign_dispatch_attempts_total"
    assert samples[(attempts, (("kind", "dispatch"), ("outcome", "succeeded")))] == 2
    assert samples[(attempts, (("kind", "dispatch"), ("outcome", "failed")))] == 1
    acknowledged_late = (
        "countersign_alerts",
        (("kind", "past_sla"), ("severity", "warning"), ("state", "acknowledged")),
    )
    assert samples[acknowledged_late] == 1
    assert samples[("countersign_alerts", (("kind", "over_budget"), ("severity", "warning"), ("state", "open")))] == 1


def test_it_refuses_addresses_not_allowed(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.7"]

    response = client.get(reverse("metrics"))  # the test client comes from 127.0.0.1

    assert response.status_code == 403
    assert b"METRICS_ALLOWED_IPS" in response.content


def test_the_token_opens_it_from_anywhere(client, settings):
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = "scrape-me"

    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert scrape(client, HTTP_AUTHORIZATION="Bearer scrape-me", REMOTE_ADDR="203.0.113.9")


def test_no_token_configured_means_no_token_opens_it(client, settings):
    settings.METRICS_ALLOWED_IPS = []
    settings.METRICS_TOKEN = ""

    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer ").status_code == 403
