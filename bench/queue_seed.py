"""Data for the queue benchmark: one department with a long queue.

Rows are bulk-inserted: this is the benchmark's setting, not the code under
test, and 10,000 proposals through the service layer would take minutes.
The mix is what a busy department sees: four risks, amounts, agents with
long-ish reasoning, a few escalated and overdue, first approvals on some
critical rows, a shadow lane and a few auto-approved rows in their undo
window. Each risk has its kind of payload, with a schema the previews read
(approvals/reads/previews.py): refunds (low), emails with a long body (medium),
record deletions (high) and vendor payments (critical).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

DEPARTMENT = "queue-bench"
PASSWORD = "queue-bench-password-1"
RISKS = ("low", "medium", "high", "critical")
REASONING = (
    "The customer was charged twice for order {n}; the payment provider shows both captures "
    "and the second one has no matching shipment, so the duplicate should be refunded in full."
)


_MONEY = {"type": "number", "exclusiveMinimum": 0}
# Per risk: the schema and money paths of the action type (its previews read them).
KINDS: dict[str, dict[str, Any]] = {
    "low": {
        "payload_schema": {
            "title": "Refund",
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount": _MONEY, "currency": {"type": "string"}},
        },
        "amount_path": "amount",
        "currency_path": "currency",
    },
    "medium": {
        "payload_schema": {
            "title": "External email",
            "type": "object",
            "properties": {
                "to": {"type": "array", "items": {"type": "string", "format": "email"}},
                "subject": {"type": "string", "maxLength": 200},
                "body": {"type": "string", "maxLength": 50_000},
            },
        },
        "amount_path": "",
        "currency_path": "",
    },
    "high": {
        "payload_schema": {
            "title": "Record deletion",
            "type": "object",
            "properties": {
                "system": {"type": "string", "enum": ["crm", "billing"]},
                "record_type": {"type": "string"},
                "record_id": {"type": "string"},
            },
        },
        "amount_path": "",
        "currency_path": "",
    },
    "critical": {
        "payload_schema": {
            "title": "Vendor payment",
            "type": "object",
            "properties": {
                "invoice_number": {"type": "string"},
                "amount": _MONEY,
                "currency": {"type": "string"},
                "due_date": {"type": "string", "format": "date"},
            },
        },
        "amount_path": "amount",
        "currency_path": "currency",
    },
}
BODY = "Hello,\n\nwe refunded the duplicate charge on order {n}. " + "It reaches your card within five days. " * 8


def _payload(risk: str, n: int, amount: Decimal) -> tuple[dict[str, Any], Decimal | None]:
    if risk == "low":
        return {"order_id": f"ORD-{n:08d}", "amount": float(amount), "currency": "EUR"}, amount
    if risk == "medium":
        email = {"to": [f"customer-{n}@example.com"], "subject": f"Your refund for order {n}", "body": BODY.format(n=n)}
        return email, None
    if risk == "high":
        return {"system": "crm", "record_type": "contact", "record_id": f"CON-{n:08d}"}, None
    invoice = {"invoice_number": f"INV-{n:08d}", "amount": float(amount), "currency": "EUR", "due_date": "2026-12-31"}
    return invoice, amount


@dataclass(frozen=True)
class Fleet:
    department: Any
    leads: list[Any]
    agents: list[Any]
    action_types: list[Any]


def fleet(n_leads: int) -> Fleet:
    """The department, its leads (queue-lead-0...), eight agents with
    contributor grants on one action type per risk. Idempotent. The leads
    have no email address: the live bench times screens, not mail."""
    from django.contrib.auth import get_user_model

    from agents.models import Agent, Grant, Tier
    from approvals.models import ActionType, Department

    users = get_user_model()
    department, _ = Department.objects.get_or_create(slug=DEPARTMENT, defaults={"name": "Queue bench"})
    owner, _ = users.objects.get_or_create(username="queue-owner")
    leads = []
    for i in range(n_leads):
        lead, created = users.objects.get_or_create(username=f"queue-lead-{i}")
        if created:
            lead.set_password(PASSWORD)
            lead.save(update_fields=["password"])
        leads.append(lead)
    department.leads.add(*leads)
    action_types = [
        ActionType.objects.update_or_create(
            slug=f"queuebench.{risk}", defaults={"name": f"Queue bench {risk}", "risk": risk, **KINDS[risk]}
        )[0]
        for risk in RISKS
    ]
    agents = []
    for i in range(8):
        agent, _ = Agent.objects.get_or_create(
            slug=f"queue-agent-{i}",
            defaults={"name": f"Queue agent {i}", "owner": owner, "department": department, "purpose": "Bench."},
        )
        for action_type in action_types:
            Grant.objects.get_or_create(agent=agent, action_type=action_type, defaults={"tier": Tier.CONTRIBUTOR})
        agents.append(agent)
    return Fleet(department, leads, agents, action_types)


def fill_queue(fleet: Fleet, pending: int, shadowed: int, vetoable: int, history: int, seed: int = 7) -> None:
    """Replace all actions with: `pending` waiting ones in the department, a
    shadow lane, some auto-approved rows inside their undo window, and
    `history` decided actions spread over it and three other departments
    (with a tenth of its pending load each), as months of use leave them."""
    from django.utils import timezone

    from approvals.models import Action, Decision

    _truncate()
    rng = random.Random(seed)
    now = timezone.now()
    others = [_other_department(fleet, i) for i in range(3)]
    rows = [_pending(fleet, rng, now, n) for n in range(pending)]
    rows += [_row(fleet, rng, now, pending + n, status="shadowed", verdict="shadowed") for n in range(shadowed)]
    rows += [_vetoable(fleet, rng, now, pending + shadowed + n) for n in range(vetoable)]
    elsewhere = [_pending(fleet, rng, now, n, department=others[n % 3]) for n in range(pending // 10 * 3)]
    decided = [_decided(fleet, rng, now, n, department=([fleet.department, *others])[n % 4]) for n in range(history)]
    Action.objects.bulk_create(rows + elsewhere + decided, batch_size=2000)
    _spread_ages()
    # Critical rows in the first pages carry a first approval: the "1 of 2" column.
    critical = [a for a in rows[:pending] if a.action_type.risk == "critical"][::3]
    Decision.objects.bulk_create(
        Decision(action=action, user=fleet.leads[i % len(fleet.leads)], verdict="approve")
        for i, action in enumerate(critical)
    )
    _analyze()


def has_queue(fleet: Fleet, pending: int, history: int) -> bool:
    """Whether the data of an earlier run is still there, as fill_queue leaves it."""
    from approvals.models import Action

    waiting = Action.objects.filter(department=fleet.department, status="pending").count()
    if waiting != pending or Action.objects.filter(decided_at__isnull=False).count() != history + 10:
        return False
    # Seeded before the payloads had their kinds (emails, deletions...): seed again.
    return Action.objects.filter(department=fleet.department, status="pending", payload__has_key="subject").exists()


def _other_department(fleet: Fleet, i: int) -> Any:
    from approvals.models import Department

    other, _ = Department.objects.get_or_create(slug=f"{DEPARTMENT}-other-{i}", defaults={"name": f"Queue other {i}"})
    other.leads.add(fleet.leads[-1])  # a lead of several departments, as some are
    return other


def _row(fleet: Fleet, rng: random.Random, now: Any, n: int, *, department: Any = None, **fields: Any) -> Any:
    from approvals.models import Action

    action_type = rng.choice(fleet.action_types)
    payload, amount = _payload(action_type.risk, n, Decimal(rng.randint(100, 500_000)) / 100)
    return Action(
        agent=fleet.agents[n % len(fleet.agents)],
        action_type=action_type,
        department=department or fleet.department,
        payload=payload,
        reasoning=REASONING.format(n=n),
        confidence=Decimal(rng.randint(500, 999)) / 1000,
        amount=amount,
        context={"ticket": f"T-{n}", "agent_version": "2.3.1"},
        routed_at=now,  # as the routing task leaves them; unrouted, the sweep would route them all
        **fields,
    )


def _pending(fleet: Fleet, rng: random.Random, now: Any, n: int, department: Any = None) -> Any:
    from approvals.rules import routing

    action = _row(fleet, rng, now, n, department=department, status="pending", verdict="pending")
    action.priority = routing.priority(action.action_type.risk, action.amount)
    action.sla_deadline = now + timedelta(minutes=rng.randint(1, 240))
    # 1 % escalated (past their SLA), as the escalation task would have left them.
    if n % 100 == 0:
        action.sla_deadline = now - timedelta(minutes=5)
        action.escalated_at = now
    return action


def _decided(fleet: Fleet, rng: random.Random, now: Any, n: int, department: Any) -> Any:
    status = rng.choice(("succeeded", "succeeded", "succeeded", "rejected", "expired", "failed"))
    return _row(fleet, rng, now, n, department=department, status=status, verdict="pending", decided_at=now)


def _vetoable(fleet: Fleet, rng: random.Random, now: Any, n: int) -> Any:
    undo_until = now + timedelta(hours=1)
    return _row(fleet, rng, now, n, status="approved", verdict="approved", decided_at=now, dispatch_after=undo_until)


def _spread_ages() -> None:
    """created_at is auto_now_add, so bulk_create stamps every row alike:
    spread the waiting ones over the last ten hours, the decided ones over
    the last ninety days."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE approvals_action SET created_at = created_at - random() * CASE"
            " WHEN status IN ('pending', 'shadowed', 'approved') THEN interval '10 hours' ELSE interval '90 days' END"
        )


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE approvals_action, approvals_decision, approvals_execution CASCADE")


def _analyze() -> None:
    """What autovacuum would have done after a bulk load: fresh statistics."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE approvals_action")
        cursor.execute("VACUUM ANALYZE approvals_decision")
