"""Recorded histories for the simulator's tests, written by the real services
on a set clock (as approvals.demo.history writes the demo's), so each row,
decision and audit event is what the gateway itself would have recorded."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from agents.models import Agent, Grant
from approvals import services
from approvals.demo.history import clock
from approvals.models import Action, ActionType
from tests.support.factories import ActionTypeFactory, GrantFactory

EUR = "EUR"


def refund_type(**fields: Any) -> ActionType:
    fields.setdefault("slug", "payments.refund")
    return ActionTypeFactory(money=True, currency=EUR, **fields)


def days_ago(days: int, hour: int = 10, minute: int = 0) -> datetime:
    """A moment `days` days before today, at a set local hour."""
    day = timezone.localdate() - timedelta(days=days)
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def grant(agent: Agent, action_type: ActionType, **fields: Any) -> Grant:
    fields.setdefault("tier_changed_at", timezone.now() - timedelta(days=90))
    fields.setdefault("tier_agent_version", agent.version)
    return GrantFactory(agent=agent, action_type=action_type, **fields)


def proposed(agent: Agent, action_type: ActionType, at: datetime, amount: str | None = None, **fields: Any) -> Action:
    payload = {"note": "refund"} if amount is None else {"amount": float(Decimal(amount)), "note": "refund"}
    fields.setdefault("confidence", Decimal("0.95"))
    with clock(at):
        action, _ = services.propose(agent, action_type, payload=payload, reasoning="Charged twice.", **fields)
    return action


def approved(action: Action, lead: Any, after: timedelta = timedelta(minutes=30)) -> Action:
    with clock(action.created_at + after):
        return services.approve(action.pk, lead)


def rejected(action: Action, lead: Any, after: timedelta = timedelta(minutes=30)) -> Action:
    with clock(action.created_at + after):
        return services.reject(action.pk, lead, reason="Not this one.")
