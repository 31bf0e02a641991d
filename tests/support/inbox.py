"""A small inbox for the preview, triage and accessibility tests: an email,
a refund and a record deletion waiting in Finance, shaped like the demo's
action types (approvals/demo/organisation.py)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agents.models import Agent, Tier
from approvals import services
from approvals.models import Action, ActionType, Risk
from tests.support.factories import ActionTypeFactory, AgentFactory, GrantFactory

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

EMAIL_SCHEMA = {
    "title": "External email",
    "type": "object",
    "properties": {
        "to": {"type": "array", "items": {"type": "string", "format": "email", "pattern": EMAIL}, "minItems": 1},
        "subject": {"type": "string", "minLength": 1, "maxLength": 200, "title": "Subject"},
        "body": {"type": "string", "minLength": 1, "maxLength": 50_000},
        "send_on": {"type": "string", "format": "date", "description": "The day it goes out."},
        "link": {"type": "string", "format": "uri"},
    },
    "required": ["to", "subject", "body"],
    "additionalProperties": False,
}
REFUND_SCHEMA = {
    "title": "Refund",
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "pattern": "^ORD-[0-9]{6}$"},
        "customer_id": {"type": "string"},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "reason": {"type": "string", "enum": ["damaged", "not_received", "duplicate_charge"]},
    },
    "required": ["order_id", "amount", "currency"],
    "additionalProperties": False,
}
DELETION_SCHEMA = {
    "title": "Record deletion",
    "type": "object",
    "properties": {
        "system": {"type": "string", "enum": ["crm", "helpdesk", "billing"]},
        "record_type": {"type": "string", "enum": ["lead", "contact", "ticket"]},
        "record_id": {"type": "string", "minLength": 1},
        "legal_basis": {"type": "string", "enum": ["gdpr_erasure", "duplicate"]},
    },
    "required": ["system", "record_type", "record_id"],
    "additionalProperties": False,
}


@dataclass
class Inbox:
    agent: Agent
    mailer: Agent
    email_type: ActionType
    refund_type: ActionType
    deletion_type: ActionType
    email: Action
    refund: Action
    deletion: Action


def email_type(**fields: Any) -> ActionType:
    return ActionTypeFactory(
        slug="email.send_external", name="Send an email", risk=Risk.HIGH, payload_schema=EMAIL_SCHEMA, **fields
    )


def refund_type() -> ActionType:
    return ActionTypeFactory(
        slug="payments.refund",
        name="Refund a customer order",
        risk=Risk.LOW,
        payload_schema=REFUND_SCHEMA,
        amount_path="amount",
        currency_path="currency",
    )


def deletion_type() -> ActionType:
    return ActionTypeFactory(
        slug="records.delete", name="Delete a record", risk=Risk.CRITICAL, payload_schema=DELETION_SCHEMA
    )


def propose(agent: Agent, action_type: ActionType, payload: dict[str, Any], reasoning: str, confidence: str) -> Action:
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(
        agent, action_type, payload=payload, reasoning=reasoning, confidence=Decimal(confidence)
    )
    return action


def build(agent: Agent) -> Inbox:
    """Three pending actions of `agent`'s department, from two agents: an
    email (high risk), a refund (low risk, the only one bulk-approvable) and
    a deletion (critical, two approvers)."""
    mailer = AgentFactory(slug="mail-bot", name="Mail Bot", owner=agent.owner, department=agent.department)
    types = email_type(), refund_type(), deletion_type()
    email = propose(
        mailer,
        types[0],
        {
            "to": ["ana@customer.example"],
            "subject": "Your refund for order ORD-104233",
            "body": "Hello Ana,\nwe refunded the duplicate charge.\nRegards",
            "send_on": "2026-12-07",
            "link": "https://shop.example/orders/104233",
        },
        "The customer asked where her money is.",
        "0.81",
    )
    refund = propose(
        agent,
        types[1],
        {
            "order_id": "ORD-104233",
            "customer_id": "CUS-10001",
            "amount": 45,
            "currency": "EUR",
            "reason": "duplicate_charge",
        },
        "Charged twice for the same order.",
        "0.97",
    )
    deletion = propose(
        agent,
        types[2],
        {"system": "crm", "record_type": "contact", "record_id": "CON-778", "legal_basis": "gdpr_erasure"},
        "Erasure request received by the DPO.",
        "0.66",
    )
    return Inbox(agent, mailer, *types, email, refund, deletion)
