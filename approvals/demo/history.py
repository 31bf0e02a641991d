"""Thirty days of the demo organisation at work, written by `seed_demo`
through the real services, so every chart, table and audit event of the demo
is what Countersign itself would have recorded. One story told in order,
hence one module of about 430 lines.

The services read the time from `django.utils.timezone.now`; `clock` sets it
to the moment of each step, so an action proposed 12 days ago carries that
date on its row, its decisions and its audit events, and the audit chain
(sealed in the order the events were written, oldest first) verifies. The
after-commit work a step queues (the leads' emails, live pushes, webhook
dispatch) is dropped: that history is over, nobody is to be told of it now.

The story, in the order a reader of the demo meets it (docs/trust.md):

- The refund assistant's refunds start as a contributor: every refund waits for
  Finance. Its record earns it executor on the trust rule within ten days;
  after that small, confident refunds run on their own.
- Its draft replies start as an executor; the drafts of one bad week are
  rejected by Support, and the rule demotes that grant to contributor.
- The lead router's CRM goes down one morning: three dispatches fail in a
  row, the circuit breaker suspends it, and Leo resumes it the next day.
- One auto-approved refund is rolled back by Fiona the morning after.
- Every vendor payment is critical: Fiona and Marcus both approve it.
- The reply drafter, an observer, is shadowed; Sam marks its drafts, and
  its shadow agreement builds up.
- Marcus approves refunds faster than they can be read, and once approves a
  backlog of fourteen in half a minute: the department dashboard flags it.

Nothing is left waiting: every historical proposal is decided, carried out or
rolled back before today, so no detector has anything to say about the past.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

from django.db import connection
from django.utils import timezone

from agents.models import Agent, Grant
from agents.services import resume_agent
from approvals import services
from approvals.autonomy import trust
from approvals.demo import organisation as demo
from approvals.demo import scenarios
from approvals.models import Action, ActionType, Executor
from approvals.reads import analytics
from approvals.rules.lifecycle import Status
from audit import context
from audit.log import Actor

SEED = 16  # the same story on every seed
SOURCE = "seed_demo history"  # in each historical audit event's context

# Proposals per day (0..1: a chance per day) of each kind, and who proposes them.
PACE: tuple[tuple[str, str, float], ...] = (
    ("refund-bot", "payments.refund", 10),
    ("refund-bot", "support.draft_reply", 3),
    ("reply-drafter", "support.draft_reply", 4),
    ("reply-drafter", "email.send_external", 2),
    ("payables-agent", "payments.vendor_payment", 1),
    ("lead-router", "crm.update_lead_owner", 6),
    ("crm-janitor", "records.delete", 0.5),
)

WEEKEND = 0.6  # of a weekday's proposals

# Every n-th human decision of each kind is a rejection.
REJECT_EVERY = {
    "payments.refund": 30,
    "payments.vendor_payment": 12,
    "support.draft_reply": 20,
    "email.send_external": 15,
    "crm.update_lead_owner": 12,
}

# Days before today on which the story's turns happen.
BAD_DRAFTS_DAYS = (20,)  # the refund bot's drafts turn curt for a day
CRM_OUTAGE_DAY = 9  # the lead router's CRM is down in the morning
ROLLBACK_DAY = 6  # a refund rolled back the next morning
BACKLOG_DAY = 4  # a lost pallet: a backlog of refunds, approved in bulk


@contextmanager
def clock(moment: datetime) -> Iterator[None]:
    """Let Countersign's code read `moment` as the time now."""
    with mock.patch.object(timezone, "now", lambda: moment):
        yield


@contextmanager
def after_commit_dropped() -> Iterator[None]:
    """Drop the after-commit work queued inside: notifications and dispatches of
    a past that is already told. Call it inside the seeding transaction."""
    queued = len(connection.run_on_commit)
    try:
        yield
    finally:
        del connection.run_on_commit[queued:]


def plan_for(rng: random.Random, agent: str, action_type: str) -> scenarios.Plan:
    """A proposal of this kind, written by the simulated fleet's own scenarios."""
    if action_type == "payments.refund":
        return scenarios.refund(rng, agent)
    if action_type == "support.draft_reply":
        return scenarios.draft_reply(rng, agent)
    if action_type == "email.send_external":
        return scenarios.external_email(rng)
    if action_type == "payments.vendor_payment":
        return scenarios.vendor_payment(rng)
    if action_type == "crm.update_lead_owner":
        return scenarios.lead_owner(rng, agent)
    return scenarios.record_deletion(rng)


@dataclass(order=True)
class _Step:
    at: datetime
    n: int
    run: Callable[[datetime], None] = field(compare=False)


class History:
    """The demo's past, played in time order: each step may schedule the next."""

    def __init__(self, now: datetime, days: int, users: dict[str, Any], agents: dict[str, Agent]) -> None:
        self.now, self.days, self.users, self.agents = now, days, users, agents
        self.rng = random.Random(SEED)
        self.today = timezone.localdate(now)
        self.end = timezone.make_aware(datetime.combine(self.today, time.min))
        self.steps: list[_Step] = []
        self.counter = itertools.count()
        self.last_decision: dict[str, datetime] = {}
        self.action_types = {t.slug: t for t in ActionType.objects.all()}
        self.decided: dict[tuple[str, str], int] = {}
        self.failing_dispatches = 0  # the CRM outage's failures still to come
        self.proposed = 0

    # ------------------------------------------------------------ scheduling

    def day(self, days_ago: int) -> date:
        return self.today - timedelta(days=days_ago)

    def moment(self, days_ago: int, hour: float) -> datetime:
        naive = datetime.combine(self.day(days_ago), time.min) + timedelta(hours=hour)
        return timezone.make_aware(naive)

    def at(self, when: datetime, run: Callable[[datetime], None]) -> None:
        heapq.heappush(self.steps, _Step(min(when, self.end - timedelta(minutes=1)), next(self.counter), run))

    def play(self) -> int:
        """Write the whole history; returns how many actions were proposed."""
        self._schedule_proposals()
        for days_ago in range(self.days, 0, -1):
            self.at(self.moment(days_ago, 19.5), self._evaluate_trust)
        token = context._request_context.set({"source": SOURCE})
        try:
            while self.steps:
                step = heapq.heappop(self.steps)
                with clock(step.at):
                    step.run(step.at)
        finally:
            context._request_context.reset(token)
        return self.proposed

    # ------------------------------------------------------------ proposals

    def _schedule_proposals(self) -> None:
        for days_ago in range(self.days, 0, -1):
            weekend = self.day(days_ago).weekday() >= 5
            for agent, action_type, per_day in PACE:
                # Quieter at weekends; otherwise about the usual number, never the same every day.
                mean = per_day * (WEEKEND if weekend else 1.0)
                count = max(0, round(self.rng.gauss(mean, mean**0.5))) if mean >= 1 else int(self.rng.random() < mean)
                for _ in range(count):
                    self._propose_at(self.moment(days_ago, self.rng.uniform(8, 17)), days_ago, agent, action_type)
            if days_ago in BAD_DRAFTS_DAYS:  # a busy week for Support: more drafts than usual
                for _ in range(6):
                    when = self.moment(days_ago, self.rng.uniform(8, 17))
                    self._propose_at(when, days_ago, "refund-bot", "support.draft_reply")
            if days_ago == BACKLOG_DAY:
                # A carrier lost a pallet: sixteen customers are refunded in the early afternoon.
                for minute in range(16):
                    when = self.moment(days_ago, 13 + minute / 10)
                    self._propose_at(when, days_ago, "refund-bot", "payments.refund", lost_pallet=True)

    def _propose_at(self, when: datetime, days_ago: int, agent: str, action_type: str, **story: bool) -> None:
        plan = plan_for(self.rng, agent, action_type)
        if story.get("lost_pallet"):
            amount = scenarios._money(self.rng, 140, 420)
            plan = replace(
                plan,
                payload={**plan.payload, "amount": float(amount), "reason": "not_received"},
                reasoning=f"The carrier lost pallet PAL-5521; this order was on it. Refund of {amount}.",
                amount=amount,
                confidence=0.97,
            )
        elif action_type == "support.draft_reply" and agent == "refund-bot" and days_ago in BAD_DRAFTS_DAYS:
            plan = replace(plan, confidence=round(self.rng.uniform(0.62, 0.78), 2))
        self.at(when, lambda now: self._propose(plan, days_ago, story))

    def _propose(self, plan: scenarios.Plan, days_ago: int, story: dict[str, bool]) -> None:
        agent = self.agents[plan.agent]
        agent.refresh_from_db(fields=["status"])
        try:
            action, _ = services.propose(
                agent,
                self.action_types[plan.action_type],
                payload=plan.payload,
                reasoning=plan.reasoning,
                confidence=None if plan.confidence is None else _three_places(plan.confidence),
                amount=plan.amount,
                context={**plan.context, "agent_version": agent.version},
                idempotency_key=plan.key,
            )
        except services.InvalidPayload:
            return
        self.proposed += 1
        if action.status == Status.PENDING:
            self._decide_later(action, days_ago, story)
        elif action.status == Status.APPROVED:
            self._carry_out_later(action, days_ago)
        elif action.status == Status.SHADOWED:
            self._mark_later(action)

    # ------------------------------------------------------------ decisions

    def _decide_later(self, action: Action, days_ago: int, story: dict[str, bool]) -> None:
        slug = action.action_type.slug
        rng = self.rng
        start = action.created_at
        if slug == "payments.refund":
            if story.get("lost_pallet"):
                # Marcus clears the backlog at once, late in the afternoon.
                self.at(self.moment(days_ago, 17.6), self._decision(action, "marcus", days_ago, fast=True))
                return
            careful = rng.random() < 0.45
            who = "fiona" if careful else "marcus"
            # Marcus often approves from the notification, seconds after the refund arrives.
            seconds = rng.uniform(8, 110) * 60 if careful else rng.choice((rng.uniform(3, 9), rng.uniform(60, 2400)))
            self.at(start + timedelta(seconds=seconds), self._decision(action, who, days_ago, fast=not careful))
        elif slug == "payments.vendor_payment":
            self.at(start + timedelta(minutes=rng.uniform(30, 150)), self._decision(action, "fiona", days_ago))
        elif slug in ("support.draft_reply", "email.send_external"):
            who = "sam" if action.agent.owner.username == "nadia" or rng.random() < 0.6 else "nadia"
            self.at(start + timedelta(minutes=rng.uniform(4, 50)), self._decision(action, who, days_ago))
        elif slug == "crm.update_lead_owner":
            self.at(start + timedelta(minutes=rng.uniform(10, 140)), self._decision(action, "leo", days_ago))
        else:
            self.at(start + timedelta(minutes=rng.uniform(40, 180)), self._decision(action, "ines", days_ago))

    def _decision(self, action: Action, who: str, days_ago: int, *, fast: bool = False) -> Callable[[datetime], None]:
        def decide(now: datetime) -> None:
            # Nobody decides two things at once: a careful lead reads the whole payload first.
            reading = timedelta(seconds=self.rng.uniform(1.2, 3.5) if fast else _reading_seconds(action) + 20)
            earliest = self.last_decision.get(who, now - reading) + reading
            if earliest > now:
                self.at(earliest, decide)
                return
            self.last_decision[who] = now
            self._decide(action, who, days_ago, now)

        return decide

    def _decide(self, action: Action, who: str, days_ago: int, now: datetime) -> None:
        user, rng = self.users[who], self.rng
        refusal = "" if self.bulk_day_refund(action, days_ago) else self._refusal(action, days_ago)
        if refusal:
            services.reject(action.pk, user, reason=refusal)
            return
        services.approve(action.pk, user)
        action.refresh_from_db()
        if action.status == Status.PENDING:  # critical: the second approver is still to come
            second = {"fiona": "marcus", "ines": "raj"}[who]
            self.at(now + timedelta(minutes=rng.uniform(5, 55)), self._decision(action, second, days_ago))
        elif action.status == Status.APPROVED:
            self._carry_out_later(action, days_ago)

    @staticmethod
    def bulk_day_refund(action: Action, days_ago: int) -> bool:
        """One of the lost pallet's refunds: Marcus approves them all, none is counted for a rejection."""
        return days_ago == BACKLOG_DAY and "PAL-5521" in action.reasoning

    def _refusal(self, action: Action, days_ago: int) -> str:
        """The reason a lead rejects this action, or "" to approve it."""
        slug, roll = action.action_type.slug, self.rng.random()
        if slug == "support.draft_reply" and action.agent.slug == "refund-bot" and days_ago in BAD_DRAFTS_DAYS:
            return "Curt and promises a refund we have not agreed to; rewrite it." if roll < 0.85 else ""
        if action.decisions.exists():
            return ""  # the second approver of a critical action agrees with the first
        # Every n-th decision of a kind goes against the agent: seldom enough to keep each record good.
        every = REJECT_EVERY.get(slug)
        key = (action.agent.slug, slug)
        self.decided[key] = self.decided.get(key, 0) + 1
        if every is None or self.decided[key] % every:
            return ""
        return {
            "payments.refund": "The carrier's claim already refunded this order.",
            "payments.vendor_payment": "This invoice was paid last month: a duplicate.",
            "support.draft_reply": "Wrong ticket: the customer asked about something else.",
            "email.send_external": "It promises a delivery date we cannot keep.",
            "crm.update_lead_owner": "This account already belongs to the enterprise team.",
        }[slug]

    def _mark_later(self, action: Action) -> None:
        if self.rng.random() < 0.7:
            when = action.created_at + timedelta(minutes=self.rng.uniform(10, 90))

            def mark(now: datetime) -> None:
                agree = self.rng.random() < 0.86
                comment = "" if agree else "I would have asked for the order number first."
                services.mark_shadow(action.pk, self.users["sam"], would_approve=agree, comment=comment)

            self.at(when, mark)

    # ------------------------------------------------------------ carrying out

    def _carry_out_later(self, action: Action, days_ago: int) -> None:
        after = max(action.dispatch_after or action.created_at, action.created_at) + timedelta(
            minutes=self.rng.uniform(1, 6)
        )
        if action.agent.slug == "lead-router" and days_ago == CRM_OUTAGE_DAY and self.failing_dispatches < 3:
            self.failing_dispatches += 1
            self.at(after, lambda now: self._carry_out(action, days_ago, fail="The CRM answered 503 for 30 s."))
            return
        self.at(after, lambda now: self._carry_out(action, days_ago))

    def _carry_out(self, action: Action, days_ago: int, fail: str = "") -> None:
        action.refresh_from_db()
        if action.status != Status.APPROVED:
            return
        reference = f"{action.action_type.slug.split('.')[-1].upper()}-{self.rng.getrandbits(40):010x}"
        undo = {"reference": reference}
        if action.action_type.executor == Executor.WEBHOOK:
            execution = services.start_dispatch(action.pk)
            if execution is None:
                return
            if fail:
                services.finish_dispatch(execution.pk, succeeded=False, error=fail)
            else:
                services.finish_dispatch(execution.pk, succeeded=True, response={"reference": reference}, undo=undo)
        elif fail:
            services.report_result(action.pk, action.agent, succeeded=False, detail={"error": fail})
        else:
            services.report_result(action.pk, action.agent, succeeded=True, detail={"reference": reference}, undo=undo)
        if fail and self.failing_dispatches == 3:
            self.failing_dispatches += 1  # the breaker has tripped: Leo resumes the agent the next morning
            self.at(self.moment(days_ago - 1, 8.4), self._resume_lead_router)
        if not fail and self._is_the_rollback(action, days_ago):
            # The next morning, within the refund's 24-hour reversal window.
            when = min(self.moment(days_ago - 1, 9.2), timezone.now() + timedelta(hours=20))
            self.at(when, lambda now: self._roll_back(action))

    def _is_the_rollback(self, action: Action, days_ago: int) -> bool:
        chosen = (
            days_ago == ROLLBACK_DAY
            and action.action_type.slug == "payments.refund"
            and action.verdict == "approved"
            and not getattr(self, "rollback_chosen", False)
        )
        if chosen:
            self.rollback_chosen = True
        return chosen

    def _resume_lead_router(self, now: datetime) -> None:
        agent = self.agents["lead-router"]
        resume_agent(
            agent,
            actor=Actor.user(self.users["leo"]),
            reason="The CRM is back (incident INC-4411 closed); its failed reassignments were redone by hand.",
        )
        # What was approved before the breaker tripped waited, held; resumed, it is carried out.
        for held in Action.objects.filter(agent=agent, status=Status.APPROVED):
            self.at(now + timedelta(minutes=self.rng.uniform(1, 5)), self._carry_out_held(held))

    def _carry_out_held(self, held: Action) -> Callable[[datetime], None]:
        # A step of its own per action: a lambda in the loop would see only the last one.
        return lambda now: self._carry_out(held, 0)

    def _roll_back(self, action: Action) -> None:
        services.request_rollback(
            action.pk, self.users["fiona"], reason="Duplicate: the carrier's claim had already refunded this order."
        )
        if action.action_type.executor == Executor.WEBHOOK:
            execution = services.start_rollback(action.pk)
            if execution is not None:
                services.finish_rollback(
                    action.pk, succeeded=True, response={"rolled_back": True}, execution_id=execution.pk
                )
        else:
            services.report_rollback(action.pk, action.agent, succeeded=True, detail={"undone": True})

    # ------------------------------------------------------------ trust

    def _evaluate_trust(self, now: datetime) -> None:
        trust.evaluate(now=now)


def _three_places(value: float) -> Any:
    return Decimal(str(round(value, 3)))


def _reading_seconds(action: Action) -> float:
    return analytics.reading_seconds(action.payload)


def prepare(agents: dict[str, Agent], start: datetime) -> None:
    """Date the agents and their grants back to the start of the history, at the tier each started at
    (demo.Permit.started_as): the rule moves them from there, as it would have."""
    Agent.objects.filter(pk__in=[a.pk for a in agents.values()]).update(created_at=start)
    for bot in demo.BOTS:
        for permit in bot.grants:
            Grant.objects.filter(agent=agents[bot.slug], action_type__slug=permit.action_type).update(
                tier=permit.started_as or permit.tier, tier_changed_at=start, created_at=start
            )


def write(now: datetime, days: int, users: dict[str, Any], agents: dict[str, Agent]) -> int:
    """The demo's last `days` days, up to today's midnight; returns how many actions were proposed."""
    history = History(now, days, users, agents)
    prepare(agents, history.moment(days, 7) - timedelta(days=1))
    with after_commit_dropped():
        return history.play()
