"""The demo fleet at work: the agents of approvals.demo.organisation propose realistic
actions through the real HTTP API, with agents/client.py, as real agents do.

What each proposes is approvals.demo.scenarios. Approved actions are carried
out and reported, as the agents that execute them would. `manage.py simulate_agents` and the embedded `serve` run it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
from django.db import close_old_connections, connection
from django.db.models import Count, Sum
from django.utils import timezone

from agents.client import Blocked, Countersign, CountersignError, Unreachable
from agents.models import Agent, AgentKey, Grant
from agents.services import issue_key, revoke_key
from approvals.demo import organisation as demo
from approvals.demo.scenarios import (
    LOOP_AFTER,
    LOOP_AGENT,
    LOOP_PROPOSALS,
    LOOP_SECONDS,
    PACES,
    STRAY_EVERY,
    Plan,
    SimulationError,
    carried_out,
    loop_plan,
    next_plan,
    plan_for_agent,
)
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


def _release_connection() -> None:
    """A run writes to the database only now and then (keys); it holds no connection in between, above all
    in the embedded server's thread, which lives as long as the server. A caller's transaction keeps its own."""
    if not connection.in_atomic_block:
        close_old_connections()


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
        # _member issues every key with an expiry; one without would never need renewing.
        expiring = [
            m
            for m in self.members.values()
            if m.key.expires_at is not None and m.key.expires_at - timezone.now() < KEY_RENEWAL
        ]
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
