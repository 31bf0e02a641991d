"""Shared by the tests/dispatch/test_dispatch_*.py files: webhook action types aimed
at a loopback receiver, and approved actions of them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents.models import Agent, Grant, Tier
from approvals import services
from approvals.models import Action, ActionType, Executor
from tests.support.factories import ActionTypeFactory, GrantFactory

SECRET = "test-webhook-secret"


def webhook_type(url: str, **fields: Any) -> ActionType:
    """A reversible webhook action type pointed at the receiver at `url`, signing with SECRET."""
    defaults: dict[str, Any] = {
        "executor": Executor.WEBHOOK,
        "webhook_url": f"{url}/hooks/refund/",
        "rollback_url": f"{url}/hooks/refund/rollback/",
        "webhook_secret": SECRET,
        "webhook_timeout_seconds": 2,
        "max_attempts": 3,
        "amount_path": "amount",
        "currency": "EUR",
    }
    return ActionTypeFactory(**{**defaults, **fields})


def proposed(
    agent: Agent, action_type: ActionType, *, tier: str = Tier.CONTRIBUTOR, note: str = "order 1001"
) -> Action:
    if not Grant.objects.filter(agent=agent, action_type=action_type).exists():
        GrantFactory(agent=agent, action_type=action_type, tier=tier)
    action, _ = services.propose(
        agent,
        action_type,
        # 25.00 in the payload, where a type that moves money reads it.
        payload={"note": note, "amount": 25.0} if action_type.moves_money else {"note": note},
        reasoning="The parcel never arrived.",
        confidence=Decimal("0.95"),
        amount=Decimal("25.00") if action_type.moves_money else None,
    )
    return action


def approved(agent: Agent, lead: Any, action_type: ActionType, **edit: Any) -> Action:
    """Approved by `lead`; with fields in `edit`, after the lead changed those."""
    action = proposed(agent, action_type)
    services.approve(action.pk, lead, edited_payload={**action.payload, **edit} if edit else None)
    action.refresh_from_db()
    return action
