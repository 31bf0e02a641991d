"""Detectors: what Celery beat looks for every minute (tasks.detect_anomalies).

Each detector is one database aggregate over a recent window and returns
findings in plain words; `run` turns them into alerts (approvals.monitoring.alerts,
which deduplicates) and suspends the agents a finding says to suspend.

- Action rate: an agent's proposals in the last ANOMALY_WINDOW_MINUTES
  against its own usual pace over the ANOMALY_BASELINE_DAYS before (or since
  it was registered), at least one a window. At the promotion policy's
  anomaly_multiplier times that (default 10) it alerts, and suspends the
  agent if its `suspend_on_anomaly` is set.
- Dispatch errors: at least DISPATCH_ERROR_PERCENT of an agent's dispatch
  attempts in the last DISPATCH_ERROR_WINDOW_MINUTES failed (at least
  DISPATCH_ERROR_MIN_ATTEMPTS attempts).
- Blocked proposals, a safety signal: an agent asked BLOCKED_ALERT_AT times
  in BLOCKED_WINDOW_MINUTES for what it may not do (no grant, over a hard
  limit); at BLOCKED_SUSPEND_AT it is suspended.
- Low approval: the humans' approval rate of an agent's proposals over the
  policy's window is under its demote threshold, on at least the policy's
  minimum of decisions, or on at least EARLY_ALERT_DECISIONS with the whole
  95 % interval under it (as approvals.autonomy.trust judges a grant).
- Past SLA: a department's queue holds actions past their decision deadline.
- Over budget: the tokens (context.tokens_used) or cost (context.cost) an
  agent reported on today's proposals pass its daily budget.
- Review overdue: an agent in service is past its next review date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DecimalField, FloatField, Min, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.timesince import timesince

from agents import reviews
from agents.models import Agent, AgentStatus
from agents.services import suspend_agent
from approvals.autonomy import metrics
from approvals.models import (
    Action,
    AlertKind,
    AlertSeverity,
    Department,
    Execution,
    ExecutionKind,
    ExecutionOutcome,
    PromotionPolicy,
    Verdict,
)
from approvals.monitoring import alerts
from approvals.rules.lifecycle import Status
from audit.log import Actor

log = logging.getLogger(__name__)

# Proposals the policy refused for what the agent itself asked: no grant, over a hard limit.
OUT_OF_SCOPE_CODES = ("not_granted", "limit_exceeded")
# A number as an agent may report it in `context`; anything else is skipped, not summed.
NUMBER = r"^[0-9]+(\.[0-9]+)?$"
# Under the policy's minimum of decisions, a low approval rate alerts only on this many or more:
# one or two rejections of a new agent are news for its page, not an alert.
EARLY_ALERT_DECISIONS = 5


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    message: str
    department_id: int
    agent_id: int | None = None
    suspend: bool = False  # suspend the agent, with the message as the reason
    scope: str = ""  # narrows what counts as the same finding (see alerts.key_for)


def _times(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")


# ---------------------------------------------------------------- the detectors


def action_rate(now: datetime) -> list[Finding]:
    window = timedelta(minutes=settings.ANOMALY_WINDOW_MINUTES)
    recent_start = now - window
    baseline_start = recent_start - timedelta(days=settings.ANOMALY_BASELINE_DAYS)
    rows = (
        Action.objects.filter(created_at__gte=baseline_start, created_at__lte=now, agent__status=AgentStatus.ACTIVE)
        .values("agent_id", "agent__name", "agent__department_id", "agent__created_at", "agent__suspend_on_anomaly")
        .annotate(
            recent=Count("pk", filter=Q(created_at__gte=recent_start)),
            before=Count("pk", filter=Q(created_at__lt=recent_start)),
        )
        .filter(recent__gt=0)
        .order_by()
    )
    policy_of = PromotionPolicy.by_department()
    findings = []
    minutes = settings.ANOMALY_WINDOW_MINUTES
    for row in rows:
        # Its usual pace per window, over the baseline days or since it was registered if that is later.
        observed = recent_start - max(baseline_start, row["agent__created_at"])
        usual = row["before"] / (observed / window) if observed >= window else 0.0
        multiplier = float(policy_of(row["agent__department_id"]).anomaly_multiplier)
        if row["recent"] < multiplier * max(usual, 1.0):
            continue
        pace = f"about {_times(usual)} per {minutes} minutes" if usual >= 1 else f"under one per {minutes} minutes"
        message = (
            f"{row['agent__name']} proposed {row['recent']} actions in the last {minutes} minutes; "
            f"its usual pace is {pace}. Countersign alerts at {_times(multiplier)} times the usual pace. "
            "Something may be looping or misusing it."
        )
        suspend = row["agent__suspend_on_anomaly"]
        if suspend:
            message += " As its settings ask, Countersign suspended it; a lead can resume it on its page."
        findings.append(_safety_finding(AlertKind.ACTION_RATE, row, message, suspend=suspend))
    return findings


def _safety_finding(kind: str, row: Mapping[str, Any], message: str, *, suspend: bool) -> Finding:
    """An agent's finding that may stop it: critical when it does, a warning otherwise."""
    severity = AlertSeverity.CRITICAL if suspend else AlertSeverity.WARNING
    return Finding(kind, severity, message, row["agent__department_id"], row["agent_id"], suspend=suspend)


def dispatch_errors(now: datetime) -> list[Finding]:
    minutes = settings.DISPATCH_ERROR_WINDOW_MINUTES
    failed = (ExecutionOutcome.FAILED, ExecutionOutcome.RETRYING)
    rows = (
        Execution.objects.filter(
            kind=ExecutionKind.DISPATCH,
            finished_at__gte=now - timedelta(minutes=minutes),
            outcome__in=(ExecutionOutcome.SUCCEEDED, *failed),
        )
        .values("action__agent_id", "action__agent__name", "action__agent__department_id")
        .annotate(attempts=Count("pk"), failed=Count("pk", filter=Q(outcome__in=failed)))
        .filter(attempts__gte=settings.DISPATCH_ERROR_MIN_ATTEMPTS)
        .order_by()
    )
    findings = []
    for row in rows:
        percent = 100 * row["failed"] / row["attempts"]
        if percent < settings.DISPATCH_ERROR_PERCENT:
            continue
        message = (
            f"{row['failed']} of the {row['attempts']} attempts in the last {minutes} minutes to carry out "
            f"{row['action__agent__name']}'s approved actions failed ({percent:.0f} %). The system it acts on may "
            "be down or refusing what it is sent; the failed actions' pages show its answers."
        )
        findings.append(
            Finding(
                AlertKind.DISPATCH_ERRORS,
                AlertSeverity.WARNING,
                message,
                row["action__agent__department_id"],
                row["action__agent_id"],
            )
        )
    return findings


def blocked_proposals(now: datetime) -> list[Finding]:
    minutes = settings.BLOCKED_WINDOW_MINUTES
    rows = (
        Action.objects.filter(
            created_at__gte=now - timedelta(minutes=minutes),
            verdict=Verdict.BLOCKED,
            verdict_code__in=OUT_OF_SCOPE_CODES,
        )
        .values("agent_id", "agent__name", "agent__department_id", "agent__status")
        .annotate(blocked=Count("pk"), not_granted=Count("pk", filter=Q(verdict_code="not_granted")))
        .filter(blocked__gte=settings.BLOCKED_ALERT_AT)
        .order_by()
    )
    findings = []
    for row in rows:
        over_limits = row["blocked"] - row["not_granted"]
        message = (
            f"{row['agent__name']} tried {row['blocked']} times in the last {minutes} minutes to do what it is "
            f"not allowed to: {row['not_granted']} without permission for that kind of action, {over_limits} over "
            "its limits. It may be confused, or someone may be misusing it."
        )
        suspend = row["blocked"] >= settings.BLOCKED_SUSPEND_AT and row["agent__status"] == AgentStatus.ACTIVE
        if suspend:
            message += (
                f" That reached the safety limit of {settings.BLOCKED_SUSPEND_AT}, so Countersign suspended it; "
                "a lead can resume it on its page."
            )
        findings.append(_safety_finding(AlertKind.BLOCKED_PROPOSALS, row, message, suspend=suspend))
    return findings


def low_approval(now: datetime) -> list[Finding]:
    policy_of = PromotionPolicy.by_department()
    agents = list(Agent.objects.filter(status=AgentStatus.ACTIVE).values_list("pk", "name", "department_id"))
    records = metrics.for_agents_over_their_windows(
        [(pk, department_id) for pk, _, department_id in agents], now, policy_of
    )
    findings = []
    for agent_id, name, department_id in agents:
        rate = records[agent_id].approval
        policy = policy_of(department_id)
        window_days = policy.window_days
        threshold = float(policy.demote_threshold)
        value, upper = rate.value, rate.upper
        if value is None or upper is None:  # no decisions in the window
            continue
        full_sample = rate.trials >= policy.min_decisions
        clearly_under = rate.trials >= EARLY_ALERT_DECISIONS and upper < threshold
        if not ((full_sample and value < threshold) or clearly_under):
            continue
        message = (
            f"People ruled on {name}'s actions {rate.trials} times over the last {window_days} days and agreed "
            f"with it only {rate.successes} times ({value:.0%}), under the {threshold:.0%} its department "
            "expects. Check what it proposes; the trust evaluation may take autonomy away from it."
        )
        findings.append(Finding(AlertKind.LOW_APPROVAL, AlertSeverity.WARNING, message, department_id, agent_id))
    return findings


def past_sla(now: datetime) -> list[Finding]:
    rows = (
        Action.objects.filter(status=Status.PENDING, sla_deadline__lt=now)
        .values("department_id", "department__name")
        .annotate(waiting=Count("pk"), oldest_deadline=Min("sla_deadline"))
        .order_by()
    )
    findings = []
    for row in rows:
        count = row["waiting"]
        what = "1 action is" if count == 1 else f"{count} actions are"
        message = (
            f"{what} waiting in the {row['department__name']} queue past the deadline for a decision; the longest "
            f"has been overdue for {timesince(row['oldest_deadline'], now)}. The agents that proposed them are "
            "waiting too: decide them, or make sure the backup approvers do."
        )
        findings.append(Finding(AlertKind.PAST_SLA, AlertSeverity.WARNING, message, row["department_id"]))
    return findings


def over_budget(now: datetime) -> list[Finding]:
    today = timezone.localdate(now)
    midnight = timezone.make_aware(datetime.combine(today, datetime.min.time()))
    rows = (
        Action.objects.filter(created_at__gte=midnight, created_at__lte=now)
        .filter(Q(agent__daily_token_budget__isnull=False) | Q(agent__daily_cost_budget__isnull=False))
        .values(
            "agent_id", "agent__name", "agent__department_id", "agent__daily_token_budget", "agent__daily_cost_budget"
        )
        .annotate(
            # The filter keeps non-numbers away from the cast: PostgreSQL evaluates
            # an aggregate's argument only for the rows its FILTER lets through.
            tokens=Sum(Cast(KT("context__tokens_used"), FloatField()), filter=Q(context__tokens_used__regex=NUMBER)),
            cost=Sum(
                Cast(KT("context__cost"), DecimalField(max_digits=20, decimal_places=6)),
                filter=Q(context__cost__regex=NUMBER),
            ),
        )
        .order_by()
    )
    findings = []
    for row in rows:
        token_budget, cost_budget = row["agent__daily_token_budget"], row["agent__daily_cost_budget"]
        overs = []
        if token_budget is not None and (row["tokens"] or 0) > token_budget:
            overs.append(f"{row['tokens']:,.0f} tokens against a daily budget of {token_budget:,}")
        if cost_budget is not None and (row["cost"] or Decimal(0)) > cost_budget:
            overs.append(f"a cost of {row['cost']:,.2f} against a daily budget of {cost_budget:,.2f}")
        if not overs:
            continue
        message = (
            f"{row['agent__name']} reported {' and '.join(overs)} on today's proposals. It may be stuck in a "
            "loop, or its budget may need raising by an admin."
        )
        findings.append(
            Finding(
                AlertKind.OVER_BUDGET,
                AlertSeverity.WARNING,
                message,
                row["agent__department_id"],
                row["agent_id"],
                scope=today.isoformat(),  # one alert a day at most
            )
        )
    return findings


def review_overdue(now: datetime) -> list[Finding]:
    findings = []
    for agent in reviews.overdue(Agent.objects.all(), timezone.localdate(now)):
        due = agent.next_review_on
        assert due is not None  # overdue() keeps only agents with a review date
        message = (
            f"{agent.name}'s review was due on {due:%d %b %Y} and has not been done. A lead of "
            f"{agent.department.name} should look at what it does and decide to keep, adjust or retire it."
        )
        findings.append(
            Finding(
                AlertKind.REVIEW_OVERDUE,
                AlertSeverity.INFO,
                message,
                agent.department_id,
                agent.pk,
                scope=due.isoformat(),  # acknowledged, it stays quiet until the next review date passes
            )
        )
    return findings


DETECTORS: tuple[Callable[[datetime], list[Finding]], ...] = (
    action_rate,
    dispatch_errors,
    blocked_proposals,
    low_approval,
    past_sla,
    over_budget,
    review_overdue,
)


# ---------------------------------------------------------------- acting on findings


def run(now: datetime | None = None) -> int:
    """Run every detector and act on what it finds; returns how many findings there were.
    One detector failing is logged and does not stop the others."""
    now = now or timezone.now()
    found = 0
    for detector in DETECTORS:
        try:
            findings = detector(now)
        except Exception:
            log.exception("The %s detector failed", detector.__name__)
            continue
        for finding in findings:
            act_on(finding, now)
        found += len(findings)
    return found


@transaction.atomic
def act_on(finding: Finding, now: datetime) -> None:
    department = Department.objects.get(pk=finding.department_id)
    agent = Agent.objects.filter(pk=finding.agent_id).first() if finding.agent_id else None
    if finding.suspend and agent is not None and agent.is_active:
        suspend_agent(agent, actor=Actor.system("anomaly detector"), reason=finding.message)
    alerts.raise_alert(
        finding.kind,
        severity=finding.severity,
        message=finding.message,
        department=department,
        agent=agent,
        scope=finding.scope,
        now=now,
    )
