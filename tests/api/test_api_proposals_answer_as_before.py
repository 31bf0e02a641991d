"""Every kind of proposal is answered and stored exactly as before the lean intake.

The intake was made cheaper (cached keys and action types, no idempotency
read before the insert, the answer built without DRF's generic walk, cached
schema validators, one shared Redis client). What it answers and stores must
not have moved. The reference, proposal_reference.json beside this file, was
written by this very test run on the code before that change (commit
a784478) with PROPOSAL_REFERENCE_UPDATE=1: for each kind of proposal (auto-
approved, pending, shadowed, blocked for each reason, refused as invalid,
replayed, in conflict) the status and body of the answer, the action row with
its audit event and decisions, and the grant's day counters. Ids and times
differ from run to run, so they are written as names and as offsets from
the action's creation; everything else is compared as it is.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agents import services as agent_services
from agents.models import Agent, Grant, Tier
from approvals import services
from approvals.models import Action, Department, Risk
from approvals.representation import ActionSerializer
from approvals.services import gateway, proposals
from audit.log import Actor
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client, post_json
from tests.api.test_api_proposals import ACTIONS, REFUND_SCHEMA
from tests.support.factories import ActionTypeFactory, AgentFactory, GrantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

REFERENCE = Path(__file__).with_name("proposal_reference.json")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def refund(paid: str, **fields: Any) -> dict[str, Any]:
    return {
        "action_type": "payments.refund",
        "payload": {"order": "A-1", "amount": float(paid)},
        "reasoning": "Damaged parcel.",
        "confidence": 0.95,
        "context": {"ticket": "T-1"},
        **fields,
    }


# (name, agent, body, Idempotency-Key header); each kind runs after the ones before it.
KINDS: list[tuple[str, str, Any, str | None]] = [
    ("auto-approved", "executor", refund("20.00", amount="20.00"), None),
    ("pending over the auto-approve limit", "executor", refund("150.00"), None),
    ("pending under the confidence floor", "executor", refund("30.00", confidence=0.5), None),
    ("pending, a contributor's", "contributor", refund("20.00"), None),
    ("shadowed, an observer's", "observer", refund("20.00"), None),
    ("blocked: no grant", "contributor", {**refund("20.00"), "action_type": "crm.delete"}, None),
    ("blocked: over the per-action limit", "executor", refund("900.00"), None),
    ("blocked: over the day's amount", "amount-limited", refund("80.00"), None),
    ("blocked: over the day's count", "count-limited", refund("10.00"), None),
    ("invalid payload", "executor", {**refund("20.00"), "payload": {"order": 7}}, None),
    ("invalid: amount mismatch", "executor", refund("20.00", amount="21.00"), None),
    ("invalid: unknown action type", "executor", {**refund("20.00"), "action_type": "nope"}, None),
    ("invalid: unknown field", "executor", refund("20.00", colour="red"), None),
    ("with an idempotency key", "executor", refund("25.00", idempotency_key="k-1"), None),
    ("replayed", "executor", refund("25.00", idempotency_key="k-1"), None),
    ("replayed by header", "executor", refund("25.00"), "k-1"),
    ("conflict: another body under the key", "executor", refund("26.00", idempotency_key="k-1"), None),
    ("conflict with an invalid body", "executor", {**refund("26.00"), "payload": {}, "idempotency_key": "k-1"}, None),
    (
        "blocked, then replayed",
        "contributor",
        {**refund("20.00"), "action_type": "crm.delete", "idempotency_key": "b"},
        None,
    ),
    (
        "blocked, replayed",
        "contributor",
        {**refund("20.00"), "action_type": "crm.delete", "idempotency_key": "b"},
        None,
    ),
    ("blocked: agent suspended", "suspended", refund("20.00"), None),
    ("blocked: gateway paused", "executor", refund("20.00"), None),
]


def _world(lead: Any) -> dict[str, str]:
    """The agents (and their raw keys) the kinds name, with fixed names."""
    department = Department.objects.create(name="Refunds", slug="refunds")
    department.leads.add(lead)
    refund_type = ActionTypeFactory(
        slug="payments.refund", risk=Risk.MEDIUM, payload_schema=REFUND_SCHEMA, amount_path="amount",
        currency="EUR", routing_department=department, undo_window_seconds=30, expiry_hours=48,
    )  # fmt: skip
    ActionTypeFactory(slug="crm.delete", risk=Risk.HIGH)
    terms = {
        "executor": {"tier": Tier.EXECUTOR, "auto_approve_max_amount": Decimal(100),
                     "max_amount_per_action": Decimal(500), "min_confidence": Decimal("0.8")},
        "contributor": {"tier": Tier.CONTRIBUTOR},
        "observer": {"tier": Tier.OBSERVER},
        "amount-limited": {"tier": Tier.EXECUTOR, "max_amount_per_day": Decimal(100)},
        "count-limited": {"tier": Tier.EXECUTOR, "max_actions_per_day": 1},
        "suspended": {"tier": Tier.EXECUTOR},
    }  # fmt: skip
    keys = {}
    for name, grant in terms.items():
        agent = AgentFactory(slug=f"{name}-bot", name=f"{name} bot", department=department)
        GrantFactory(agent=agent, action_type=refund_type, **grant)
        keys[name] = agent_services.issue_key(agent, actor=Actor.system("tests"))[1]
    for limited in ("amount-limited-bot", "count-limited-bot"):  # each has used most of its day: 30.00 in one
        proposals.propose(Agent.objects.get(slug=limited), refund_type, payload={"order": "A-0", "amount": 30.0},
                          reasoning="Earlier today.", confidence=Decimal("0.9"))  # fmt: skip
    return keys


def _run_kind(name: str, agent: str, body: Any, header: str | None, keys: dict[str, str], lead: Any) -> dict[str, Any]:
    if name == "blocked: agent suspended":
        agent_services.suspend_agent(Agent.objects.get(slug="suspended-bot"), actor=Actor.system("tests"), reason="x")
    if name == "blocked: gateway paused":
        gateway.set_paused(True, user=lead, reason="Incident.")
    before = set(Action.objects.values_list("pk", flat=True))
    extra = {"HTTP_IDEMPOTENCY_KEY": header} if header else {}
    response = post_json(api_client(raw_key=keys[agent]), ACTIONS, body, **extra)
    answer = response.json()
    new = Action.objects.exclude(pk__in=before)
    named = _Names()
    return {
        "kind": name,
        "status": response.status_code,
        "answer": named.json(answer),
        "stored": [named.row(action) for action in new.order_by("created_at")],
        "day counters": {
            grant.agent.slug: _counters(grant)
            for grant in Grant.objects.select_related("agent").order_by("agent__slug")
        },
    }


def _counters(grant: Grant) -> dict[str, Any]:
    """The grant's day so far, as the policy counts it (the sum in cents: SQLite leaves off the zeros)."""
    counted = proposals._todays_counters(grant)
    if "amount_today" in counted:
        counted["amount_today"] = counted["amount_today"].quantize(Decimal("0.01"))
    return counted


class _Names:
    """Ids as the order they first appear in, times as offsets from the first time seen."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.origin: datetime | None = None

    def id(self, value: Any) -> str:
        return self.ids.setdefault(str(value), f"<id {len(self.ids) + 1}>")

    def time(self, value: datetime | str | None) -> str | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
        self.origin = self.origin or moment
        return f"<+{round((moment - self.origin).total_seconds())} s>"

    def json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.json(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)", value):
            return self.time(value)
        if isinstance(value, str):
            return UUID.sub(lambda found: self.id(found.group()), value)
        return value

    def row(self, action: Action) -> dict[str, Any]:
        self.time(action.created_at)
        fields = {field.attname: getattr(action, field.attname) for field in Action._meta.concrete_fields}
        fields = {key: self.time(value) if isinstance(value, datetime) else value for key, value in fields.items()}
        fields.update(
            id=self.id(action.pk), agent_id=action.agent.slug, action_type_id=action.action_type.slug,
            department_id=action.department.slug, grant_id=action.grant.agent.slug if action.grant else None,
            callback_key_id=action.callback_key_id is not None,
            decisions=list(action.decisions.values("verdict", "comment")),
        )  # fmt: skip
        events = AuditEvent.objects.for_object(action).order_by("id")
        fields["audit"] = [
            {"verb": e.verb, "actor": [e.actor_kind, e.actor_label], "before": e.before, "after": e.after,
             "department": e.department_id == action.department_id, "agent": e.agent_id == action.agent_id}
            for e in events
        ]  # fmt: skip
        return self.json(fields)


def _normalised(results: Any) -> Any:
    """As stored in JSON: decimals as text, tuples as lists."""
    return json.loads(json.dumps(results, default=str))


def test_every_kind_of_proposal_is_answered_and_stored_as_before(lead):
    keys = _world(lead)
    results = _normalised([_run_kind(*kind, keys, lead) for kind in KINDS])
    if os.environ.get("PROPOSAL_REFERENCE_UPDATE"):
        REFERENCE.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    reference = json.loads(REFERENCE.read_text())
    for now, before in zip(results, reference, strict=True):
        assert now == before, now["kind"]


def test_the_direct_answer_is_drfs_generic_one(lead):
    """ActionSerializer builds its JSON directly; DRF's walk over its declared fields must agree,
    also with decisions (an approval, a rejection) and the null and empty fields of each kind."""
    keys = _world(lead)
    for kind in KINDS:
        _run_kind(*kind, keys, lead)
    waiting = Action.objects.filter(status="pending").order_by("created_at")
    services.approve(waiting[0].pk, lead, comment="Fine.")
    services.reject(waiting[1].pk, lead, reason="No.")
    for action in Action.objects.prefetch_related("decisions", "executions"):
        serializer = ActionSerializer(action)
        assert serializer.to_representation(action) == serializer.generic_representation(action)
