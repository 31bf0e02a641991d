"""The demo fleet at work: the agents of approvals.demo.organisation propose realistic
actions through the real HTTP API, with agents/client.py, as real agents do.

Each scenario writes one proposal an agent would plausibly make, with numbers
spread so that the policy answers with a mix of verdicts: small confident
refunds run on their own, large ones wait for Finance, a few break a hard
limit or stray outside a grant and are blocked, the observer's drafts are
shadowed. Approved actions are carried out and reported, as the agents that
execute them would. `manage.py simulate_agents` and the embedded `serve` run it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.db import close_old_connections, connection
from django.db.models import Count, Sum
from django.utils import timezone

from agents.client import Blocked, Countersign, CountersignError, Unreachable
from agents.models import Agent, AgentKey, Grant
from agents.services import issue_key, revoke_key
from approvals.demo import organisation as demo
from approvals.models import Action, ActionType, Executor
from approvals.rules.lifecycle import Status
from audit.log import Actor

log = logging.getLogger(__name__)

ACTOR = Actor.system("simulate_agents")
KEY_LABEL = "simulate_agents"
# Keys expire, so a run killed before it could revoke them leaves nothing usable for long; live runs renew.
KEY_LIFETIME = timedelta(hours=12)
KEY_RENEWAL = timedelta(hours=1)
SETTLE_EVERY_SECONDS = 10.0  # how often the agents look for approved actions to carry out

# The paced fleet (the embedded run): each agent proposes at its own pace (demo.Bot.pace_per_hour),
# each interval drawn within ±JITTER of the mean, so no agent comes near the action-rate detector's
# ten times its usual pace. A plan meant to be blocked (Plan.stray), or one that would break the
# grant's daily limits, is made at most once per STRAY_EVERY per agent: the blocked-proposals
# detector alerts at five an hour. Everything else within its baselines, except one scripted
# anomaly: LOOP_AFTER into the run, the lead router loops and proposes LOOP_PROPOSALS
# reassignments of one lead, one every LOOP_SECONDS: one action-rate alert, and only that.
JITTER = 0.25
STRAY_EVERY = timedelta(minutes=20)
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


# ---------------------------------------------------------------- scenarios


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


# ---------------------------------------------------------------- the fleet


def _release_connection() -> None:
    """A run writes to the database only now and then (keys); it holds no connection in between, above all
    in the embedded server's thread, which lives as long as the server. A caller's transaction keeps its own."""
    if not connection.in_atomic_block:
        close_old_connections()


class SimulationError(Exception):
    """The simulation cannot start or go on; the message says why."""


@dataclass
class Member:
    agent: Agent
    key: AgentKey
    raw: str  # the secret, held in memory for the length of the run only
    client: Countersign


class Simulation:
    """The demo agents, one key and one API client each, proposing at `rate` per second."""

    def __init__(
        self,
        url: str,
        *,
        rate: float = 1.0,
        say: Callable[[str], None] = print,
        seed: int | None = None,
        transport: httpx.BaseTransport | None = None,
        anomaly: bool = True,
    ) -> None:
        if rate <= 0:
            raise SimulationError("The rate must be above zero proposals per second.")
        self.url, self.rate, self.say, self.transport = url.rstrip("/"), rate, say, transport
        self.rng = random.Random(seed)  # demo data, not secrets: a seed makes a run repeatable
        self.members: dict[str, Member] = {}
        self.tally: Counter[str] = Counter()
        self.proposed = 0
        # The paced fleet's clock (tick): when it started, each agent's next turn, its last stray.
        self.started: datetime | None = None
        self.next_turn: dict[str, datetime] = {}
        self.last_stray: dict[str, datetime] = {}
        self.loop_due: list[datetime] = []
        self.loop_lead = f"LEAD-{self.rng.randint(30000, 39999)}"
        self.anomaly = anomaly
        self.last_settled: datetime | None = None

    def run(
        self,
        *,
        count: int | None = None,
        duration: float | None = None,
        stop: threading.Event | None = None,
        connect_timeout: float = 60.0,
    ) -> None:
        """Issue the keys, wait for the server, propose until `count`, `duration` or `stop`; revoke the keys."""
        stop = stop or threading.Event()
        try:
            self._issue_keys()
            self._wait_until_up(stop, connect_timeout)
            self._propose_until(stop, count, duration)
        finally:
            self._revoke_keys()

    def run_paced(self, *, stop: threading.Event, connect_timeout: float = 60.0) -> None:
        """The embedded run's fleet: issue the keys, wait for the server, tick every second until `stop`."""
        try:
            self._issue_keys()
            self._wait_until_up(stop, connect_timeout)
            while not stop.is_set():
                self.tick(timezone.now())
                stop.wait(1.0)
        finally:
            self._revoke_keys()

    def start(self) -> None:
        """Issue the keys for ticking by hand (a test drives tick() itself); stop() revokes them."""
        self._issue_keys()

    def stop(self) -> None:
        self._revoke_keys()

    def tick(self, now: datetime) -> None:
        """Everything due by `now`: each agent whose turn it is proposes once, the loop's proposals
        once it is time, and now and then the agents carry out what was approved."""
        if self.started is None:
            self.started = now
            for slug in self.members:  # first turns spread over one interval, not all at once
                self.next_turn[slug] = now + self._interval(slug) * self.rng.random()
            if self.anomaly and LOOP_AGENT in self.members:
                first = now + LOOP_AFTER
                self.loop_due = [first + timedelta(seconds=LOOP_SECONDS * n) for n in range(LOOP_PROPOSALS)]
        for slug in list(self.members):
            if self.next_turn[slug] <= now:
                plan = self._fitting_plan(slug, now)
                if plan is not None:
                    self._propose(plan)
                self.next_turn[slug] = max(self.next_turn[slug] + self._interval(slug, jitter=True), now)
        while self.loop_due and self.loop_due[0] <= now:
            self.loop_due.pop(0)
            self._propose(loop_plan(self.rng, self.loop_lead, LOOP_PROPOSALS - len(self.loop_due)))
        if self.last_settled is None or (now - self.last_settled).total_seconds() >= SETTLE_EVERY_SECONDS:
            self._carry_out_approved(now)
            self._renew_expiring_keys()
            self.last_settled = now

    def _interval(self, slug: str, *, jitter: bool = False) -> timedelta:
        pace = PACES.get(slug, 6.0)
        spread = self.rng.uniform(1 - JITTER, 1 + JITTER) if jitter else 1.0
        return timedelta(hours=spread / pace)

    def _fitting_plan(self, slug: str, now: datetime) -> Plan | None:
        """A plan of this agent's that the policy will let through, or (once per STRAY_EVERY) one it will block."""
        may_stray = now - self.last_stray.get(slug, now - STRAY_EVERY) >= STRAY_EVERY
        for _ in range(20):
            plan = plan_for_agent(self.rng, slug)
            if plan.stray or not self._within_daily_limits(plan, now):
                if not may_stray:
                    continue
                self.last_stray[slug] = now
            return plan
        return None

    def _within_daily_limits(self, plan: Plan, now: datetime) -> bool:
        """What an agent that knows its grant checks: today's proposals and amount under its daily limits."""
        try:
            grant = Grant.objects.filter(agent__slug=plan.agent, action_type__slug=plan.action_type).first()
            if grant is None or (grant.max_actions_per_day is None and grant.max_amount_per_day is None):
                return True
            midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
            today = (
                Action.objects.filter(grant=grant, created_at__gte=midnight)
                .exclude(status=Status.BLOCKED)
                .aggregate(n=Count("pk"), total=Sum("amount"))
            )
        finally:
            _release_connection()
        if grant.max_actions_per_day is not None and today["n"] + 1 > grant.max_actions_per_day:
            return False
        spent = (today["total"] or Decimal(0)) + (plan.amount or Decimal(0))
        return grant.max_amount_per_day is None or spent <= grant.max_amount_per_day

    def summary(self) -> str:
        verdicts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(self.tally.items()))
        return f"{self.proposed} proposals" + (f": {verdicts}" if verdicts else "") + "."

    # ------------------------------------------------------------ keys

    def _issue_keys(self) -> None:
        try:
            agents = Agent.objects.filter(slug__in=[bot.slug for bot in demo.BOTS]).select_related("department")
            for agent in agents:
                self.members[agent.slug] = self._member(agent)
        finally:
            _release_connection()
        if not self.members:
            raise SimulationError("No demo agents in this database: run `python manage.py seed_demo` first.")

    def _member(self, agent: Agent) -> Member:
        key, raw = issue_key(agent, actor=ACTOR, label=KEY_LABEL, expires_at=timezone.now() + KEY_LIFETIME)
        return Member(agent, key, raw, Countersign(self.url, raw, timeout=15, transport=self.transport))

    def _renew_expiring_keys(self) -> None:
        expiring = [m for m in self.members.values() if m.key.expires_at - timezone.now() < KEY_RENEWAL]
        try:
            for old in expiring:
                self.members[old.agent.slug] = self._member(old.agent)
                self._retire(old)
        finally:
            _release_connection()

    def _revoke_keys(self) -> None:
        try:
            for member in self.members.values():
                self._retire(member)
        finally:
            _release_connection()

    @staticmethod
    def _retire(member: Member) -> None:
        member.client.close()
        revoke_key(member.key, actor=ACTOR)

    # ------------------------------------------------------------ proposing

    def _wait_until_up(self, stop: threading.Event, connect_timeout: float) -> None:
        """The server may still be starting: ask the API who we are until it answers."""
        deadline = time.monotonic() + connect_timeout
        told = False
        with Countersign(self.url, next(iter(self.members.values())).raw, retries=0, timeout=5) as probe:
            while not stop.is_set():
                try:
                    probe.me()
                    return
                except Unreachable as error:
                    if time.monotonic() > deadline:
                        message = f"Countersign did not answer at {self.url} within {connect_timeout:.0f} s."
                        raise SimulationError(message) from error
                    if not told:
                        self.say(
                            f"Countersign is not answering at {self.url} yet; retrying for {connect_timeout:.0f} s."
                        )
                        told = True
                except CountersignError as error:
                    message = f"{self.url} refused the simulator ({error}). Is it the server on this database?"
                    raise SimulationError(message) from error
                stop.wait(1.0)

    def _propose_until(self, stop: threading.Event, count: int | None, duration: float | None) -> None:
        started = next_at = last_settled = time.monotonic()
        while not stop.is_set():
            if count is not None and self.proposed >= count:
                return
            if duration is not None and time.monotonic() - started >= duration:
                return
            self._propose(next_plan(self.rng, set(self.members)))
            if time.monotonic() - last_settled >= SETTLE_EVERY_SECONDS:
                self._carry_out_approved(timezone.now())
                self._renew_expiring_keys()
                last_settled = time.monotonic()
            # Jittered, so the queue fills like a real one; never bursting to catch up after a slow answer.
            next_at = max(next_at + self.rng.uniform(0.5, 1.5) / self.rate, time.monotonic())
            if count is None or self.proposed < count:
                stop.wait(next_at - time.monotonic())

    def _propose(self, plan: Plan) -> None:
        member = self.members[plan.agent]
        context = {**plan.context, "agent_version": member.agent.version}
        self.proposed += 1
        try:
            action = member.client.propose(
                plan.action_type,
                plan.payload,
                plan.reasoning,
                confidence=plan.confidence,
                amount=plan.amount,
                context=context,
                idempotency_key=plan.key,
            )
            verdict, why = action["status"], action["policy"]["reason"]
        except Blocked as blocked:
            verdict, why = "blocked", blocked.message
        except CountersignError as error:  # the server went away, or refused: say so and go on
            verdict, why = "error", str(error)
        self.tally[verdict] += 1
        amount = f"{plan.amount:>9,.2f}" if plan.amount is not None else " " * 9
        self.say(f"{plan.agent:<15} {plan.action_type:<24} {amount}  {verdict:<9} {why}")

    def _carry_out_approved(self, now: datetime) -> None:
        """Approved actions are the agents' to execute once their undo window is over; they report how it went.
        The gateway dispatches webhook action types itself (refused here as not_agent_executed), and
        the agents undo what a lead asked to roll back."""
        agent_executed = set(ActionType.objects.filter(executor=Executor.AGENT).values_list("slug", flat=True))
        _release_connection()
        for member in self.members.values():
            self._roll_back_requested(member, agent_executed)
            try:
                approved = member.client.list(status="approved", limit=20)
            except CountersignError as error:
                log.info("%s could not list its approved actions: %s", member.agent.slug, error)
                continue
            for action in approved:
                if action["action_type"] not in agent_executed:
                    continue
                if action["dispatch_after"] and datetime.fromisoformat(action["dispatch_after"]) > now:
                    continue  # still in its undo window: a lead may veto it
                outcome, detail, undo = carried_out(action, self.rng)
                try:
                    member.client.report(action["id"], outcome, detail, undo)
                    self.tally[f"reported {outcome}"] += 1
                except CountersignError as error:  # e.g. vetoed meanwhile, or the gateway dispatches this type
                    log.info("%s could not report on %s: %s", member.agent.slug, action["id"], error)

    def _roll_back_requested(self, member: Member, agent_executed: set[str]) -> None:
        """Undo what a lead asked to roll back (agent-executed action types) and say how it went."""
        try:
            requested = member.client.list(status="rollback_requested", limit=20)
        except CountersignError as error:
            log.info("%s could not list its rollbacks: %s", member.agent.slug, error)
            return
        for action in requested:
            if action["action_type"] not in agent_executed:
                continue  # the gateway rolls back webhook action types itself
            try:
                member.client.report_rollback(action["id"], "succeeded", {"undone": True})
                self.tally["rolled back"] += 1
            except CountersignError as error:
                log.info("%s could not report the rollback of %s: %s", member.agent.slug, action["id"], error)
