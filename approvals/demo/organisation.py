"""The demo organisation, as data: who works where, what agents may do, and a
few proposals to fill the queue. `manage.py seed_demo` turns it into rows.

Plain declarations only, so a reader sees the whole organisation at a glance
and a test can walk it without touching the database. It is long (about 500
lines) for that reason: one organisation, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.models import Tier
from approvals.models import Risk
from approvals.rules.lifecycle import Status

# Printed on purpose at the end of every run: it guards demo data, nothing else.
DEFAULT_PASSWORD = "countersign-demo"  # noqa: S105
EMAIL_DOMAIN = "example.com"  # reserved for documentation (RFC 2606): demo mail goes nowhere
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
HISTORY_DAYS = 30  # how far back seed_demo writes the demo's past (approvals.demo.history)


@dataclass(frozen=True)
class Person:
    username: str
    first_name: str
    last_name: str
    title: str
    admin: bool = False


@dataclass(frozen=True)
class Team:
    slug: str
    name: str
    sla_minutes: int
    leads: tuple[str, ...]
    backups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Capability:
    slug: str
    name: str
    description: str
    risk: str
    reversible: bool
    schema: dict[str, Any]
    reversal_window_minutes: int = 0
    undo_window_seconds: int = 0
    expiry_hours: int = 24
    routed_to: str | None = None  # department slug; None: the proposing agent's own department
    # Dispatched by signed webhook to the built-in demo target (approvals.demo.target), in this
    # mode ("ok", "flaky", ...); None: the agent executes and reports back.
    demo_target: str | None = None
    # Where the money lives in the payload (ActionType.amount_path, currency_path); empty: it moves none.
    amount_path: str = ""
    currency_path: str = ""


@dataclass(frozen=True)
class Permit:
    action_type: str
    tier: str
    max_amount_per_action: Decimal | None = None
    max_actions_per_day: int | None = None
    max_amount_per_day: Decimal | None = None
    auto_approve_max_amount: Decimal | None = None
    min_confidence: Decimal = Decimal("0.800")
    # The tier the grant held when the demo's history began (approvals.demo.history); the trust rule
    # moved it to `tier` on its record. None: it held `tier` all along.
    started_as: str | None = None


@dataclass(frozen=True)
class Bot:
    slug: str
    name: str
    owner: str
    department: str
    purpose: str
    version: str
    grants: tuple[Permit, ...]
    # Its pace in the embedded run's simulated fleet (approvals.demo.fleet.tick), proposals per hour:
    # about one a minute in all, each agent far under ten times its usual pace.
    pace_per_hour: float = 6.0


@dataclass(frozen=True)
class Proposal:
    """One demo proposal and the status the policy should give it."""

    agent: str
    action_type: str
    key: str  # idempotency key, as a real agent would send
    payload: dict[str, Any]
    reasoning: str
    expect: str
    confidence: Decimal | None = None
    amount: Decimal | None = None
    context: dict[str, Any] = field(default_factory=dict)


PEOPLE: tuple[Person, ...] = (
    Person("admin", "Alex", "Morgan", "Platform administrator", admin=True),
    Person("fiona", "Fiona", "Hart", "Head of Finance Operations"),
    Person("marcus", "Marcus", "Webb", "Accounts Payable Manager"),
    Person("claire", "Claire", "Dubois", "Financial Controller"),
    Person("sam", "Sam", "Ortiz", "Support Team Lead"),
    Person("nadia", "Nadia", "Rahman", "Head of Customer Support"),
    Person("leo", "Leo", "Park", "Revenue Operations Lead"),
    Person("ines", "Ines", "Duarte", "IT Operations Manager"),
    Person("raj", "Raj", "Patel", "Data Protection Officer"),
    Person("olga", "Olga", "Chen", "ML Platform Engineer"),
)

TEAMS: tuple[Team, ...] = (
    # Money waits half a working day at most; the controller covers overdue items.
    Team("finance", "Finance", 240, leads=("fiona", "marcus"), backups=("claire",)),
    # Customers are waiting on the other end: one hour.
    Team("support", "Support", 60, leads=("sam", "nadia")),
    Team("sales", "Sales", 480, leads=("leo",), backups=("claire",)),
    # Deletions are critical (two approvers), so IT needs two leads.
    Team("it", "IT", 1440, leads=("ines", "raj")),
)

_MONEY = {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000}
_CURRENCY = {"type": "string", "enum": ["EUR", "USD", "GBP"]}
_EMAIL = {"type": "string", "format": "email", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "maxLength": 254}

CAPABILITIES: tuple[Capability, ...] = (
    Capability(
        slug="payments.refund",
        name="Refund a customer order",
        description="Refund all or part of a paid order to the customer's original payment method.",
        risk=Risk.MEDIUM,
        reversible=True,
        reversal_window_minutes=24 * 60,
        undo_window_seconds=120,
        routed_to="finance",  # refund bots live in Support; Finance signs off on money
        demo_target="ok",
        amount_path="amount",
        currency_path="currency",
        schema={
            "$schema": DRAFT_2020_12,
            "title": "Refund",
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "pattern": "^ORD-[0-9]{6}$"},
                "customer_id": {"type": "string", "pattern": "^CUS-[0-9]{5}$"},
                "amount": _MONEY,
                "currency": _CURRENCY,
                "reason": {"type": "string", "enum": ["damaged", "not_received", "duplicate_charge", "goodwill"]},
                "note": {"type": "string", "maxLength": 1000},
            },
            "required": ["order_id", "customer_id", "amount", "currency", "reason"],
            "additionalProperties": False,
        },
    ),
    Capability(
        slug="payments.vendor_payment",
        name="Pay a vendor invoice",
        description="Send a bank transfer to a supplier for an approved invoice. Money sent cannot be recalled.",
        risk=Risk.CRITICAL,
        reversible=False,
        expiry_hours=72,
        routed_to="finance",
        amount_path="amount",
        currency_path="currency",
        schema={
            "$schema": DRAFT_2020_12,
            "title": "Vendor payment",
            "type": "object",
            "properties": {
                "vendor_id": {"type": "string", "pattern": "^VEN-[0-9]{4}$"},
                "invoice_number": {"type": "string", "minLength": 1, "maxLength": 40},
                "amount": _MONEY,
                "currency": _CURRENCY,
                "iban": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$"},
                "due_date": {"type": "string", "format": "date"},
                "reference": {"type": "string", "maxLength": 140},
            },
            "required": ["vendor_id", "invoice_number", "amount", "currency", "iban"],
            "additionalProperties": False,
        },
    ),
    Capability(
        slug="support.draft_reply",
        name="Draft a customer reply",
        description="Save a reply as a draft on the ticket; an agent of the helpdesk still sends it.",
        risk=Risk.LOW,
        reversible=True,
        reversal_window_minutes=7 * 24 * 60,
        schema={
            "$schema": DRAFT_2020_12,
            "title": "Draft reply",
            "type": "object",
            "properties": {
                "ticket_id": {"type": "string", "pattern": "^SUP-[0-9]{4,}$"},
                "customer_id": {"type": "string", "pattern": "^CUS-[0-9]{5}$"},
                "subject": {"type": "string", "minLength": 1, "maxLength": 200},
                "body": {"type": "string", "minLength": 1, "maxLength": 20_000},
                "tone": {"type": "string", "enum": ["neutral", "apologetic", "formal"]},
            },
            "required": ["ticket_id", "subject", "body"],
            "additionalProperties": False,
        },
    ),
    Capability(
        slug="email.send_external",
        name="Send an email outside the company",
        description="Send an email to addresses outside the company domain. Sent mail cannot be unsent.",
        risk=Risk.HIGH,
        reversible=False,
        expiry_hours=8,
        schema={
            "$schema": DRAFT_2020_12,
            "title": "External email",
            "type": "object",
            "properties": {
                "to": {"type": "array", "items": _EMAIL, "minItems": 1, "maxItems": 10},
                "cc": {"type": "array", "items": _EMAIL, "maxItems": 10},
                "subject": {"type": "string", "minLength": 1, "maxLength": 200},
                "body": {"type": "string", "minLength": 1, "maxLength": 50_000},
                "ticket_id": {"type": "string", "pattern": "^SUP-[0-9]{4,}$"},
            },
            "required": ["to", "subject", "body"],
            "additionalProperties": False,
        },
    ),
    Capability(
        slug="crm.update_lead_owner",
        name="Reassign a CRM lead",
        description="Give a sales lead to another account executive.",
        risk=Risk.LOW,
        reversible=True,
        reversal_window_minutes=7 * 24 * 60,
        undo_window_seconds=60,
        # The CRM drops the first call of one in five: the retry shows on those actions' pages.
        demo_target="hiccup",
        schema={
            "$schema": DRAFT_2020_12,
            "title": "Lead reassignment",
            "type": "object",
            "properties": {
                "lead_id": {"type": "string", "pattern": "^LEAD-[0-9]{5}$"},
                "new_owner": _EMAIL,
                "previous_owner": _EMAIL,
                "reason": {"type": "string", "enum": ["territory", "capacity", "language", "account_match"]},
            },
            "required": ["lead_id", "new_owner", "reason"],
            "additionalProperties": False,
        },
    ),
    Capability(
        slug="records.delete",
        name="Delete a record permanently",
        description="Erase a record and its history from the source system, e.g. for a GDPR erasure request.",
        risk=Risk.CRITICAL,
        reversible=False,
        expiry_hours=72,
        routed_to="it",  # whoever asks, IT (with the DPO) decides what is erased
        schema={
            "$schema": DRAFT_2020_12,
            "title": "Record deletion",
            "type": "object",
            "properties": {
                "system": {"type": "string", "enum": ["crm", "helpdesk", "billing"]},
                "record_type": {"type": "string", "enum": ["lead", "contact", "ticket"]},
                "record_id": {"type": "string", "minLength": 1, "maxLength": 64},
                "legal_basis": {"type": "string", "enum": ["gdpr_erasure", "duplicate", "retention_expired"]},
                "request_reference": {"type": "string", "maxLength": 64},
            },
            "required": ["system", "record_type", "record_id", "legal_basis"],
            "additionalProperties": False,
        },
    ),
)

BOTS: tuple[Bot, ...] = (
    Bot(
        slug="refund-bot",
        name="Refund assistant",
        owner="olga",
        department="support",
        purpose="Reads delivery and billing tickets and proposes refunds for the customer's order.",
        version="2.3.1",
        pace_per_hour=20,
        grants=(
            # Earned executor: small refunds run on their own, larger ones wait for Finance.
            Permit(
                "payments.refund",
                Tier.EXECUTOR,
                max_amount_per_action=Decimal("2000.00"),
                max_actions_per_day=200,
                max_amount_per_day=Decimal("15000.00"),
                auto_approve_max_amount=Decimal("100.00"),
                min_confidence=Decimal("0.900"),
                started_as=Tier.CONTRIBUTOR,  # promoted on its record
            ),
            # Demoted after a week of drafts Support rejected.
            Permit("support.draft_reply", Tier.CONTRIBUTOR, max_actions_per_day=500, started_as=Tier.EXECUTOR),
        ),
    ),
    Bot(
        slug="reply-drafter",
        name="Reply drafter",
        owner="nadia",  # a Support lead: she sees its actions but may not approve them
        department="support",
        purpose="Drafts first answers to new support tickets and emails customers once a lead agrees.",
        version="0.9.0-beta",
        pace_per_hour=16,
        grants=(
            Permit("support.draft_reply", Tier.OBSERVER, max_actions_per_day=1000),
            Permit("email.send_external", Tier.CONTRIBUTOR, max_actions_per_day=100),
        ),
    ),
    Bot(
        slug="payables-agent",
        name="Accounts payable clerk",
        owner="olga",
        department="finance",
        purpose="Matches supplier invoices to purchase orders and proposes the payment when they agree.",
        version="1.2.0",
        pace_per_hour=3,
        grants=(
            Permit(
                "payments.vendor_payment",
                Tier.CONTRIBUTOR,
                max_amount_per_action=Decimal("50000.00"),
                max_actions_per_day=20,
                max_amount_per_day=Decimal("250000.00"),
            ),
        ),
    ),
    Bot(
        slug="lead-router",
        name="Lead router",
        owner="olga",
        department="sales",
        purpose="Assigns inbound leads to account executives by territory, language and workload.",
        version="1.4.0",
        pace_per_hour=16,
        grants=(
            Permit("crm.update_lead_owner", Tier.EXECUTOR, max_actions_per_day=500, min_confidence=Decimal("0.750")),
        ),
    ),
    Bot(
        slug="crm-janitor",
        name="CRM hygiene",
        owner="olga",
        department="sales",
        purpose="Finds duplicate and expired CRM records and erasure requests, and proposes their deletion.",
        version="0.4.2",
        pace_per_hour=3,
        grants=(Permit("records.delete", Tier.CONTRIBUTOR, max_actions_per_day=25),),
    ),
)

PROPOSALS: tuple[Proposal, ...] = (
    Proposal(
        agent="refund-bot",
        action_type="payments.refund",
        key="SUP-4821-refund",
        payload={
            "order_id": "ORD-104233",
            "customer_id": "CUS-20417",
            "amount": 45.0,
            "currency": "EUR",
            "reason": "damaged",
            "note": "Mug arrived broken; photo attached to the ticket.",
        },
        reasoning="Carrier photo confirms breakage; order value 45.00 is under the auto-approve limit.",
        confidence=Decimal("0.970"),
        amount=Decimal("45.00"),
        context={"ticket": "SUP-4821", "resources": ["order:ORD-104233"], "data_classification": "internal"},
        expect=Status.APPROVED,
    ),
    Proposal(
        agent="refund-bot",
        action_type="payments.refund",
        key="SUP-4830-refund",
        payload={
            "order_id": "ORD-103871",
            "customer_id": "CUS-18852",
            "amount": 480.0,
            "currency": "EUR",
            "reason": "not_received",
        },
        reasoning="Tracking shows the parcel lost in transit for 12 days; carrier claim opened.",
        confidence=Decimal("0.930"),
        amount=Decimal("480.00"),
        context={"ticket": "SUP-4830", "resources": ["order:ORD-103871"], "data_classification": "internal"},
        expect=Status.PENDING,
    ),
    Proposal(
        agent="refund-bot",
        action_type="payments.refund",
        key="SUP-4836-refund",
        payload={
            "order_id": "ORD-102950",
            "customer_id": "CUS-11093",
            "amount": 3200.0,
            "currency": "EUR",
            "reason": "goodwill",
        },
        reasoning="Long-standing customer threatens to churn after three late deliveries.",
        confidence=Decimal("0.880"),
        amount=Decimal("3200.00"),
        context={"ticket": "SUP-4836", "resources": ["order:ORD-102950"], "data_classification": "internal"},
        expect=Status.BLOCKED,  # over the grant's 2,000.00 per action
    ),
    Proposal(
        agent="reply-drafter",
        action_type="support.draft_reply",
        key="SUP-4840-draft",
        payload={
            "ticket_id": "SUP-4840",
            "customer_id": "CUS-20988",
            "subject": "Re: Where is my order?",
            "body": "Hi Jonas, your order left our warehouse yesterday and should reach you on Thursday.",
            "tone": "neutral",
        },
        reasoning="Order status lookup shows it shipped; a status update answers the question.",
        confidence=Decimal("0.910"),
        context={"ticket": "SUP-4840", "resources": ["ticket:SUP-4840"], "data_classification": "confidential"},
        expect=Status.SHADOWED,
    ),
    Proposal(
        agent="reply-drafter",
        action_type="email.send_external",
        key="SUP-4827-email",
        payload={
            "to": ["m.keller@example.org"],
            "subject": "Your replacement is on its way",
            "body": "Dear Ms Keller, we have shipped a replacement for the damaged kettle. Tracking: 1Z999AA10123.",
            "ticket_id": "SUP-4827",
        },
        reasoning="Replacement shipped this morning; the customer asked to be told by email.",
        confidence=Decimal("0.890"),
        context={"ticket": "SUP-4827", "resources": ["ticket:SUP-4827"], "data_classification": "confidential"},
        expect=Status.PENDING,
    ),
    Proposal(
        agent="reply-drafter",
        action_type="payments.refund",
        key="SUP-4827-refund",
        payload={
            "order_id": "ORD-104001",
            "customer_id": "CUS-20133",
            "amount": 19.9,
            "currency": "EUR",
            "reason": "goodwill",
        },
        reasoning="Customer mentioned the delay; a small gesture seems fair.",
        confidence=Decimal("0.640"),
        amount=Decimal("19.90"),
        context={"ticket": "SUP-4827", "resources": ["order:ORD-104001"], "data_classification": "internal"},
        expect=Status.BLOCKED,  # no grant: this agent drafts, it does not refund
    ),
    Proposal(
        agent="payables-agent",
        action_type="payments.vendor_payment",
        key="INV-2024-0917",
        payload={
            "vendor_id": "VEN-0042",
            "invoice_number": "NL-88213",
            "amount": 18400.0,
            "currency": "EUR",
            "iban": "NL91ABNA0417164300",
            "reference": "PO-5531 packaging, March",
        },
        reasoning="Three-way match: invoice, purchase order PO-5531 and goods receipt agree to the cent.",
        confidence=Decimal("0.990"),
        amount=Decimal("18400.00"),
        context={"resources": ["invoice:NL-88213", "po:PO-5531"], "data_classification": "confidential"},
        expect=Status.PENDING,  # critical: two different Finance leads must approve
    ),
    Proposal(
        agent="lead-router",
        action_type="crm.update_lead_owner",
        key="LEAD-30117-route",
        payload={
            "lead_id": "LEAD-30117",
            "new_owner": "d.schmidt@example.com",
            "previous_owner": "inbound-queue@example.com",
            "reason": "territory",
        },
        reasoning="Company is in Munich; DACH territory belongs to D. Schmidt, who has capacity.",
        confidence=Decimal("0.940"),
        context={"resources": ["lead:LEAD-30117"], "data_classification": "internal"},
        expect=Status.APPROVED,
    ),
    Proposal(
        agent="lead-router",
        action_type="crm.update_lead_owner",
        key="LEAD-30121-route",
        payload={
            "lead_id": "LEAD-30121",
            "new_owner": "a.rossi@example.com",
            "previous_owner": "j.berg@example.com",
            "reason": "account_match",
        },
        reasoning="Email domain may match an existing account owned by A. Rossi, but the company name differs.",
        confidence=Decimal("0.610"),
        context={"resources": ["lead:LEAD-30121"], "data_classification": "internal"},
        expect=Status.PENDING,  # under the grant's confidence floor
    ),
    Proposal(
        agent="crm-janitor",
        action_type="records.delete",
        key="DSR-2291-delete",
        payload={
            "system": "crm",
            "record_type": "contact",
            "record_id": "CON-77120",
            "legal_basis": "gdpr_erasure",
            "request_reference": "DSR-2291",
        },
        reasoning="Verified erasure request DSR-2291; no open orders or legal hold on this contact.",
        confidence=Decimal("0.960"),
        context={"resources": ["contact:CON-77120"], "data_classification": "personal"},
        expect=Status.PENDING,  # critical, routed to IT
    ),
)
