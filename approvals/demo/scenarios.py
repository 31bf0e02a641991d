"""What the demo fleet proposes: one scenario per kind of proposal an agent would
plausibly make, with numbers spread so that the policy answers with a mix of
verdicts (small confident refunds run on their own, large ones wait for
Finance, a few break a hard limit or stray outside a grant, the observer's
drafts are shadowed), and what carrying an approved one out reports."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from approvals.demo import organisation as demo

STRAY_EVERY = timedelta(minutes=20)


class SimulationError(Exception):
    """The simulation cannot start or go on; the message says why."""


LOOP_AGENT = "lead-router"


LOOP_AFTER = timedelta(minutes=4)


LOOP_PROPOSALS = 14


LOOP_SECONDS = 4


NAMES = ("Jonas", "Amelia", "Priya", "Mateo", "Sofia", "Kenji", "Lea", "Omar", "Hannah", "Lucas", "Ines", "Tomasz")


PRODUCTS = ("kettle", "desk lamp", "running shoes", "coffee grinder", "backpack", "headphones", "yoga mat", "blender")


VENDORS = (
    ("VEN-0042", "Packwell B.V.", "NL91ABNA0417164300", "packaging"),
    ("VEN-0107", "Nordic Freight AB", "SE4550000000058398257466", "freight"),
    ("VEN-0215", "Cloudhost GmbH", "DE89370400440532013000", "hosting"),
    ("VEN-0318", "Office Supplies Ltd", "GB29NWBK60161331926819", "office supplies"),
)


TERRITORIES = (
    ("Munich", "DACH", "d.schmidt@example.com"),
    ("Milan", "Italy", "a.rossi@example.com"),
    ("Lyon", "France", "m.lefevre@example.com"),
    ("Osaka", "Japan", "s.nakamura@example.com"),
    ("Oslo", "the Nordics", "j.berg@example.com"),
    ("Leeds", "the UK", "c.okafor@example.com"),
)


@dataclass(frozen=True)
class Plan:
    """One proposal an agent is about to make."""

    agent: str
    action_type: str
    payload: dict[str, Any]
    reasoning: str
    confidence: float
    amount: Decimal | None = None
    context: dict[str, Any] = field(default_factory=dict)
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    stray: bool = False  # written to break a grant's limit or go outside it: the policy will block it


def _money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(str(round(rng.uniform(low, high), 2)))


def _ticket(rng: random.Random) -> str:
    return f"SUP-{rng.randint(4850, 9999)}"


def _customer(rng: random.Random) -> str:
    return f"CUS-{rng.randint(10000, 29999)}"


def _ticket_context(rng: random.Random, ticket: str, resources: list[str], classification: str) -> dict[str, Any]:
    return {
        "ticket": ticket,
        "resources": resources,
        "data_classification": classification,
        "tokens_used": rng.randint(900, 6000),
    }


def refund(rng: random.Random, agent: str = "refund-bot") -> Plan:
    """Mostly small (auto-approved when confident), some large (Finance decides), a few over the hard limit."""
    roll = rng.random()
    amount = _money(rng, 5, 95) if roll < 0.55 else _money(rng, 120, 1900) if roll < 0.92 else _money(rng, 2100, 4800)
    reason, why = rng.choice(
        [
            ("damaged", "Customer photo shows the {product} broken in its box; carrier confirms rough handling."),
            (
                "not_received",
                "Tracking shows the {product} stuck in transit for {days} days; carrier claim opened.",
            ),
            ("duplicate_charge", "Payment provider shows the order charged twice within a minute."),
            ("goodwill", "Third late delivery for a long-standing customer; churn risk flagged by the CRM."),
        ]
    )
    ticket, order = _ticket(rng), f"ORD-{rng.randint(100000, 109999)}"
    text = why.format(product=rng.choice(PRODUCTS), days=rng.randint(8, 21))
    return Plan(
        agent=agent,
        action_type="payments.refund",
        payload={
            "order_id": order,
            "customer_id": _customer(rng),
            "amount": float(amount),
            "currency": rng.choice(("EUR", "EUR", "EUR", "GBP", "USD")),
            "reason": reason,
            "note": f"{text} See {ticket}.",
        },
        reasoning=f"{text} Refund of {amount} for {order}.",
        confidence=round(rng.uniform(0.84, 0.99), 2),
        amount=amount,
        context=_ticket_context(rng, ticket, [f"order:{order}"], "internal"),
        key=f"{ticket}-refund-{uuid.uuid4().hex[:8]}",
        stray=roll >= 0.92 or agent != "refund-bot",
    )


def draft_reply(rng: random.Random, agent: str) -> Plan:
    ticket, name, product = _ticket(rng), rng.choice(NAMES), rng.choice(PRODUCTS)
    subject, body, tone, why = rng.choice(
        [
            (
                "Re: Where is my order?",
                f"Hi {name}, your {product} left our warehouse yesterday and should reach you within two days.",
                "neutral",
                "Order lookup shows it shipped; a status update answers the question.",
            ),
            (
                "Re: Damaged on arrival",
                f"Dear {name}, we are sorry your {product} arrived damaged. A replacement is on its way.",
                "apologetic",
                "Damage is confirmed by the customer's photo; replacement stock is available.",
            ),
            (
                "Re: Invoice copy",
                f"Dear {name}, please find the invoice for your {product} attached to this ticket.",
                "formal",
                "The customer asks for an invoice copy; billing has it on file.",
            ),
        ]
    )
    return Plan(
        agent=agent,
        action_type="support.draft_reply",
        payload={"ticket_id": ticket, "customer_id": _customer(rng), "subject": subject, "body": body, "tone": tone},
        reasoning=why,
        confidence=round(rng.uniform(0.7, 0.98), 2),
        context=_ticket_context(rng, ticket, [f"ticket:{ticket}"], "confidential"),
        key=f"{ticket}-draft-{uuid.uuid4().hex[:8]}",
    )


def external_email(rng: random.Random) -> Plan:
    ticket, name, product = _ticket(rng), rng.choice(NAMES), rng.choice(PRODUCTS)
    return Plan(
        agent="reply-drafter",
        action_type="email.send_external",
        payload={
            "to": [f"{name.lower()}.{rng.randint(1, 99)}@example.org"],
            "subject": f"Update on your {product}",
            "body": f"Dear {name}, your replacement {product} was shipped today. You will get tracking by email.",
            "ticket_id": ticket,
        },
        reasoning=f"The customer asked on {ticket} to be told by email once the replacement ships.",
        confidence=round(rng.uniform(0.75, 0.97), 2),
        context=_ticket_context(rng, ticket, [f"ticket:{ticket}"], "confidential"),
        key=f"{ticket}-email-{uuid.uuid4().hex[:8]}",
    )


def vendor_payment(rng: random.Random) -> Plan:
    vendor, company, iban, what = rng.choice(VENDORS)
    amount = _money(rng, 800, 48000) if rng.random() < 0.94 else _money(rng, 52000, 90000)
    over = amount > Decimal(50000)
    invoice, po = f"INV-{rng.randint(10000, 99999)}", f"PO-{rng.randint(5000, 9999)}"
    return Plan(
        agent="payables-agent",
        action_type="payments.vendor_payment",
        payload={
            "vendor_id": vendor,
            "invoice_number": invoice,
            "amount": float(amount),
            "currency": "EUR",
            "iban": iban,
            "due_date": (date.today() + timedelta(days=rng.randint(3, 30))).isoformat(),
            "reference": f"{po} {what}",
        },
        reasoning=f"Three-way match for {company}: invoice {invoice}, {po} and the goods receipt agree.",
        confidence=round(rng.uniform(0.9, 0.995), 3),
        amount=amount,
        context={"resources": [f"invoice:{invoice}", f"po:{po}"], "data_classification": "confidential"},
        key=f"{invoice}-pay-{uuid.uuid4().hex[:8]}",
        stray=over,
    )


def lead_owner(rng: random.Random, agent: str = "lead-router") -> Plan:
    """Confident territory matches run on their own; guesses under the grant's floor wait for Sales."""
    city, territory, owner = rng.choice(TERRITORIES)
    lead = f"LEAD-{rng.randint(30000, 39999)}"
    confidence = round(rng.uniform(0.6, 0.99), 2)
    reason, why = (
        ("territory", f"The company is in {city}; {territory} belongs to {owner}, who has capacity.")
        if confidence >= 0.75
        else ("account_match", f"The email domain may match an account of {owner}, but the company name differs.")
    )
    return Plan(
        agent=agent,
        action_type="crm.update_lead_owner",
        payload={"lead_id": lead, "new_owner": owner, "previous_owner": "inbound-queue@example.com", "reason": reason},
        reasoning=why,
        confidence=confidence,
        context={"resources": [f"lead:{lead}"], "data_classification": "internal"},
        key=f"{lead}-route-{uuid.uuid4().hex[:8]}",
        stray=agent != "lead-router",
    )


def record_deletion(rng: random.Random) -> Plan:
    basis = rng.choice(("gdpr_erasure", "duplicate", "retention_expired"))
    record_type = rng.choice(("lead", "contact"))
    record = f"{'LEAD' if record_type == 'lead' else 'CON'}-{rng.randint(70000, 79999)}"
    request = f"DSR-{rng.randint(2300, 2999)}" if basis == "gdpr_erasure" else ""
    why = {
        "gdpr_erasure": f"Verified erasure request {request}; no open orders or legal hold on this {record_type}.",
        "duplicate": f"Same email and phone as an older {record_type}; all activity was merged into it.",
        "retention_expired": f"No activity for seven years; the {record_type} is past its retention period.",
    }[basis]
    payload = {"system": "crm", "record_type": record_type, "record_id": record, "legal_basis": basis}
    return Plan(
        agent="crm-janitor",
        action_type="records.delete",
        payload={**payload, "request_reference": request} if request else payload,
        reasoning=why,
        confidence=round(rng.uniform(0.85, 0.99), 2),
        context={"resources": [f"{record_type}:{record}"], "data_classification": "personal"},
        key=f"{record}-delete-{uuid.uuid4().hex[:8]}",
    )


# The paced fleet's proposals per hour, per agent (demo.Bot.pace_per_hour).
PACES = {bot.slug: bot.pace_per_hour for bot in demo.BOTS}


# (weight, agent, scenario). The last two stray outside their agents' grants: blocked as not_granted.
SCENARIOS: tuple[tuple[int, str, Callable[[random.Random], Plan]], ...] = (
    (30, "refund-bot", refund),
    (7, "refund-bot", lambda rng: draft_reply(rng, "refund-bot")),
    (16, "reply-drafter", lambda rng: draft_reply(rng, "reply-drafter")),
    (9, "reply-drafter", external_email),
    (8, "payables-agent", vendor_payment),
    (20, "lead-router", lead_owner),
    (6, "crm-janitor", record_deletion),
    (2, "reply-drafter", lambda rng: refund(rng, "reply-drafter")),
    (1, "crm-janitor", lambda rng: lead_owner(rng, "crm-janitor")),
)


def next_plan(rng: random.Random, agents: set[str]) -> Plan:
    """A proposal from one of the given agents, drawn by the scenarios' weights."""
    usable = [(weight, scenario) for weight, agent, scenario in SCENARIOS if agent in agents]
    if not usable:
        raise SimulationError("None of the demo agents is in this database: run `python manage.py seed_demo`.")
    scenario = rng.choices([s for _, s in usable], weights=[w for w, _ in usable])[0]
    return scenario(rng)


def plan_for_agent(rng: random.Random, agent: str) -> Plan:
    """A proposal of this agent's, drawn by the scenarios' weights."""
    usable = [(weight, scenario) for weight, who, scenario in SCENARIOS if who == agent]
    return rng.choices([s for _, s in usable], weights=[w for w, _ in usable])[0](rng)


def loop_plan(rng: random.Random, lead: str, attempt: int) -> Plan:
    """The scripted anomaly: the lead router, stuck in a retry loop, reassigns the same lead again and again."""
    city, territory, owner = TERRITORIES[0]
    return Plan(
        agent=LOOP_AGENT,
        action_type="crm.update_lead_owner",
        payload={
            "lead_id": lead,
            "new_owner": owner,
            "previous_owner": "inbound-queue@example.com",
            "reason": "territory",
        },
        reasoning=f"The company is in {city}; {territory} belongs to {owner}. (Batch retry {attempt}.)",
        confidence=0.93,
        context={"resources": [f"lead:{lead}"], "data_classification": "internal"},
        key=f"{lead}-route-retry-{attempt}-{uuid.uuid4().hex[:6]}",
    )


def carried_out(action: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """What executing an approved action reports: outcome, detail, and what undoing it would need."""
    if rng.random() < 0.03:
        return "failed", {"error": "The downstream system timed out after 30 s."}, None
    reference = f"{action['action_type'].split('.')[-1].upper()}-{uuid.uuid4().hex[:10]}"
    return "succeeded", {"reference": reference}, {"reference": reference}
