"""/metrics in Prometheus' text format, through prometheus_client.

The numbers are read from the database at scrape time (a custom collector),
not counted in one process's memory: with several web and worker processes
every scrape sees the same, whole picture. A handful of aggregates per scrape.

- countersign_actions{status}: actions by status (a gauge: actions move on).
- countersign_queue_depth{department}: actions waiting for a decision.
- countersign_decision_seconds: a histogram of the time from proposal to a
  human's decision, over every decided action.
- countersign_dispatch_attempts_total{kind,outcome}: dispatch and rollback attempts.
- countersign_alerts{kind,severity,state}: alerts open and acknowledged.

Not public: answers the addresses in METRICS_ALLOWED_IPS, or a request with
"Authorization: Bearer <METRICS_TOKEN>"; anyone else gets 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from approvals.autonomy.metrics import DECIDED_BY_A_HUMAN, SecondsToDecision
from approvals.models import Action, Alert, Department, Execution
from approvals.rules.lifecycle import Status

# Seconds: from "decided at once" to "waited a working day and more".
DECISION_BUCKETS = (30, 60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600)


class CountersignCollector:
    def collect(self) -> Iterator[Metric]:
        yield self.actions_by_status()
        yield self.queue_depth()
        yield self.decision_seconds()
        yield self.dispatch_attempts()
        yield self.alerts()

    def actions_by_status(self) -> Metric:
        family = GaugeMetricFamily("countersign_actions", "Actions by status.", labels=["status"])
        counts = dict(Action.objects.values_list("status").annotate(n=Count("pk")).order_by())
        for status in Status.values:
            family.add_metric([status], counts.get(status, 0))
        return family

    def queue_depth(self) -> Metric:
        family = GaugeMetricFamily(
            "countersign_queue_depth", "Actions waiting for a decision, by department.", labels=["department"]
        )
        # Over the pending actions only (their partial index), then every department, empty ones at 0.
        pending = Action.objects.pending().values_list("department_id").annotate(n=Count("pk")).order_by()
        depth = dict(pending)
        for department_id, slug in Department.objects.values_list("pk", "slug").order_by("slug"):
            family.add_metric([slug], depth.get(department_id, 0))
        return family

    def decision_seconds(self) -> Metric:
        seconds = SecondsToDecision()
        buckets = {f"le_{bound}": Count("pk", filter=Q(seconds__lte=bound)) for bound in DECISION_BUCKETS}
        totals = (
            Action.objects.filter(DECIDED_BY_A_HUMAN)
            .annotate(seconds=seconds)
            .aggregate(count=Count("pk"), total=Sum("seconds"), **buckets)
        )
        family = HistogramMetricFamily(
            "countersign_decision_seconds", "Time from proposal to a human's decision.", unit="seconds"
        )
        cumulative = [(str(float(bound)), totals[f"le_{bound}"]) for bound in DECISION_BUCKETS]
        family.add_metric([], [*cumulative, ("+Inf", totals["count"])], sum_value=totals["total"] or 0.0)
        return family

    def dispatch_attempts(self) -> Metric:
        family = CounterMetricFamily(
            "countersign_dispatch_attempts", "Dispatch and rollback attempts by outcome.", labels=["kind", "outcome"]
        )
        rows = Execution.objects.values_list("kind", "outcome").annotate(n=Count("pk")).order_by("kind", "outcome")
        for kind, outcome, count in rows:
            family.add_metric([kind, outcome], count)
        return family

    def alerts(self) -> Metric:
        family = GaugeMetricFamily(
            "countersign_alerts", "Alerts by kind, severity and state.", labels=["kind", "severity", "state"]
        )
        rows = (
            Alert.objects.values_list("kind", "severity")
            .annotate(open=Count("pk", filter=Q(acknowledged_at__isnull=True)), acknowledged=Count("acknowledged_at"))
            .order_by("kind", "severity")
        )
        for kind, severity, open_count, acknowledged in rows:
            family.add_metric([kind, severity, "open"], open_count)
            family.add_metric([kind, severity, "acknowledged"], acknowledged)
        return family


registry = CollectorRegistry()
registry.register(CountersignCollector())


def has_metrics_token(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


def may_scrape(request: HttpRequest) -> bool:
    return has_metrics_token(request) or request.META.get("REMOTE_ADDR") in settings.METRICS_ALLOWED_IPS


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponseForbidden(
            "Metrics are for the monitoring system: scrape from an address in METRICS_ALLOWED_IPS "
            "or send Authorization: Bearer <METRICS_TOKEN>.",
            content_type="text/plain",
        )
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
