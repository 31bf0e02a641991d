"""The soak engine: proposals at a fixed rate through the agent API while
leads decide through the queue page's own endpoints, against a running
server; then a reconciliation of what the clients saw with the actions table
and the audit trail.

Used by tests/faults/test_soak.py (a short run in the suite) and bench/soak.py (the
5-minute run on demand). Three steps, so the ORM work stays out of the event
loop that drives the load:

    fleet = seed(run_id, agents=4, leads=3)          # ORM, committed
    load = drive(base_url, fleet, rate=20, seconds=300)  # asyncio + httpx, no ORM
    rows = reconcile(fleet, load)                    # ORM; rows.ok, rows.table()

The load client proposes open-loop: proposal i starts at t0 + i / rate
whether or not earlier ones have been answered, each with its own
idempotency key; every REPLAY_EVERY-th proposal is sent a second time with
the same key and body (it must answer 200 with the same action); a transport
error or a 5xx is retried with the same key (and counted). Leads log in
through /login/, read /queue/, and approve or reject rows as the queue's
htmx forms do (HX-Request, X-CSRFToken, lane=pending); several leads pick
from the same page, so some of their clicks race and must lose cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from tests.support.servers import CLIENT_KEEPALIVE_SECONDS

PASSWORD = "soak-lead-password"
REPLAY_EVERY = 10
RETRIES = 3
# Proposals in flight at once. Past it the schedule slips (counted as late
# starts) rather than piling up requests in the client: httpx's pool slows
# down with the square of the requests queued in it.
MAX_IN_FLIGHT = 64
CLIENT_TIMEOUT = 30.0
# Idle connections go before uvicorn closes them (tests.support.servers), so that a
# transport error means a real fault.
LIMITS = httpx.Limits(
    max_connections=MAX_IN_FLIGHT + 8, max_keepalive_connections=32, keepalive_expiry=CLIENT_KEEPALIVE_SECONDS
)
REJECT_SHARE = 0.25
# How many rows of the page one lead clicks before reading the queue again.
CLICKS_PER_READ = 5
ACTION_ID = re.compile(r'action="/actions/([0-9a-f-]{36})/approve/"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


# ---------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    run_id: str
    agent_keys: list[str]  # one raw key per agent
    action_types: list[str]
    lead_names: list[str]
    department_id: int

    @property
    def key_prefix(self) -> str:
        return f"soak-{self.run_id}-"


def seed(run_id: str, *, agents: int = 4, leads: int = 3) -> Fleet:
    """A department with `leads` leads (real passwords, for /login/), two
    low-risk agent-executed action types and `agents` agents with contributor
    grants on both (every proposal waits for a lead), each with a fresh key.
    Must run where the ORM may (not inside the load's event loop)."""
    from django.contrib.auth import get_user_model

    from agents.models import Agent, Grant, Tier
    from agents.services import issue_key
    from approvals.models import ActionType, Department, Executor, Risk
    from audit.log import Actor

    users = get_user_model()
    owner, _ = users.objects.get_or_create(username=f"soak-owner-{run_id}")
    department = Department.objects.create(name=f"Soak {run_id}", slug=f"soak-{run_id}")
    lead_names = []
    for n in range(leads):
        lead = users.objects.create_user(username=f"soak-lead-{run_id}-{n}", password=PASSWORD)
        department.leads.add(lead)
        lead_names.append(lead.username)
    schema = {
        "type": "object",
        "required": ["ticket"],
        "additionalProperties": False,
        "properties": {"ticket": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    }
    types = [
        ActionType.objects.create(
            slug=f"soak.{run_id}.{name}",
            name=f"Soak {name}",
            risk=Risk.LOW,
            executor=Executor.AGENT,
            payload_schema=schema,
            amount_path="amount",
            routing_department=department,
        )
        for name in ("refund", "reassign")
    ]
    keys = []
    for n in range(agents):
        agent = Agent.objects.create(
            slug=f"soak-{run_id}-agent-{n}",
            name=f"Soak agent {n}",
            owner=owner,
            department=department,
            purpose="Proposes at a fixed rate for the soak.",
            version="1.0",
            suspend_on_anomaly=False,
        )
        for action_type in types:
            Grant.objects.create(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
        keys.append(issue_key(agent, actor=Actor.system("soak"))[1])
    return Fleet(run_id, keys, [t.slug for t in types], lead_names, department.pk)


# ---------------------------------------------------------------- the load


@dataclass
class Load:
    """What the clients saw."""

    rate: float
    seconds: float
    elapsed: float = 0.0
    sent: int = 0  # proposals (distinct idempotency keys)
    created: dict[str, str] = field(default_factory=dict)  # idempotency key -> action id (the 201 answers)
    proposal_statuses: Counter[int] = field(default_factory=Counter)  # final answer per key
    replays: Counter[str] = field(default_factory=Counter)  # "same" (200, same id) / "different" / "status <n>"
    retries: int = 0
    agent_5xx: int = 0
    transport_errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    late_starts: int = 0  # proposals started more than a second behind schedule
    queue_reads: int = 0
    decisions_won: Counter[str] = field(default_factory=Counter)  # approve / reject -> action ids decided
    decided_ids: dict[str, str] = field(default_factory=dict)  # action id -> verb the lead client won
    clicks_lost: int = 0  # "Already decided": another lead was first
    lead_statuses: Counter[int] = field(default_factory=Counter)
    lead_5xx: int = 0
    unexpected: list[str] = field(default_factory=list)  # the first few odd answers

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def note(self, text: str) -> None:
        if len(self.unexpected) < 10:
            self.unexpected.append(text[:400])


def drive(base_url: str, fleet: Fleet, *, rate: float, seconds: float, leads_think: float = 0.05) -> Load:
    """Propose at `rate` per second for `seconds` while every lead decides;
    returns what the clients saw once the last proposal is answered."""
    return asyncio.run(_drive(base_url, fleet, rate, seconds, leads_think))


async def _drive(base_url: str, fleet: Fleet, rate: float, seconds: float, think: float) -> Load:
    load = Load(rate, seconds)
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT, limits=LIMITS) as api:
        leads = [await _log_in(base_url, name, load) for name in fleet.lead_names]
        stop = asyncio.Event()
        lead_tasks = [
            asyncio.create_task(_lead(lead, load, stop, think, random.Random(n))) for n, lead in enumerate(leads)
        ]
        started = time.monotonic()
        total = int(rate * seconds)
        proposals = set()
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        for i in range(total):
            due = started + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            if time.monotonic() - due > 1:
                load.late_starts += 1
            task = asyncio.create_task(_propose(api, fleet, i, load))
            proposals.add(task)
            task.add_done_callback(lambda done: (proposals.discard(done), in_flight.release()))
        await asyncio.gather(*proposals)
        load.elapsed = time.monotonic() - started
        stop.set()
        await asyncio.gather(*lead_tasks)
        for lead in leads:
            await lead.aclose()
    return load


def _proposal(fleet: Fleet, i: int) -> tuple[str, dict[str, Any]]:
    key = f"{fleet.key_prefix}{i}"
    body = {
        "action_type": fleet.action_types[i % len(fleet.action_types)],
        "payload": {"ticket": f"T-{i}", "amount": i % 500},
        "reasoning": f"Soak proposal {i}.",
        "confidence": 0.9,
        "amount": str(Decimal(i % 500)),
        "context": {"soak": fleet.run_id, "n": i},
        "idempotency_key": key,
    }
    return key, body


async def _post_proposal(
    api: httpx.AsyncClient, agent_key: str, body: dict[str, Any], load: Load
) -> httpx.Response | None:
    """POST, retrying a transport error or a 5xx with the same idempotency key."""
    headers = {"Authorization": f"Bearer {agent_key}"}
    for attempt in range(RETRIES + 1):
        if attempt:
            load.retries += 1
            await asyncio.sleep(0.2 * attempt)
        try:
            response = await api.post("/api/v1/actions/", json=body, headers=headers)
        except httpx.HTTPError as error:
            load.transport_errors.append(f"{type(error).__name__}: {error}"[:200])
            continue
        if response.status_code >= 500:
            load.agent_5xx += 1
            load.note(f"agent {response.status_code} {response.text}")
            continue
        return response
    return None


async def _propose(api: httpx.AsyncClient, fleet: Fleet, i: int, load: Load) -> None:
    key, body = _proposal(fleet, i)
    agent_key = fleet.agent_keys[i % len(fleet.agent_keys)]
    load.sent += 1
    began = time.perf_counter()
    response = await _post_proposal(api, agent_key, body, load)
    if response is None:
        load.proposal_statuses[0] += 1  # no answer after the retries
        return
    load.latencies_ms.append((time.perf_counter() - began) * 1000)
    code = response.status_code
    load.proposal_statuses[code] += 1
    if code in (200, 201):  # 200: a retry after a lost answer found the original
        load.created[key] = response.json()["id"]
    else:
        load.note(f"proposal {key}: {code} {response.text}")
        return
    if i % REPLAY_EVERY == 0:
        again = await _post_proposal(api, agent_key, body, load)
        if again is None:
            load.replays["no answer"] += 1
        elif again.status_code == 200 and again.json()["id"] == load.created[key]:
            load.replays["same"] += 1
        elif again.status_code == 200:
            load.replays["different"] += 1
        else:
            load.replays[f"status {again.status_code}"] += 1
            load.note(f"replay {key}: {again.status_code} {again.text}")


# ---------------------------------------------------------------- the leads


async def _log_in(base_url: str, username: str, load: Load) -> httpx.AsyncClient:
    """A browser-like client, logged in through the login form (CSRF cookie and token)."""
    client = httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT, limits=LIMITS)
    page = await client.get("/login/")
    token = CSRF_INPUT.search(page.text)
    if page.status_code != 200 or token is None:
        raise RuntimeError(f"The login page answered {page.status_code} without a CSRF token.")
    answer = await client.post(
        "/login/", data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
    )
    if answer.status_code != 302:
        raise RuntimeError(f"Logging in as {username} answered {answer.status_code}.")
    return client


async def _lead(client: httpx.AsyncClient, load: Load, stop: asyncio.Event, think: float, rng: random.Random) -> None:
    """Read the queue, click approve or reject on a few of its rows, repeat
    until told to stop."""
    while not stop.is_set():
        page = await client.get("/queue/")
        load.queue_reads += 1
        load.lead_statuses[page.status_code] += 1
        if page.status_code >= 500:
            load.lead_5xx += 1
            load.note(f"queue {page.status_code} {page.text[:300]}")
        ids = ACTION_ID.findall(page.text)
        token = CSRF_INPUT.search(page.text)
        if not ids or token is None:
            await _pause(stop, 0.2)
            continue
        headers = {"HX-Request": "true", "X-CSRFToken": token.group(1)}
        for action_id in rng.sample(ids, min(CLICKS_PER_READ, len(ids))):
            if stop.is_set():
                return
            await _decide(client, action_id, headers, load, rng)
            await _pause(stop, think)


async def _decide(
    client: httpx.AsyncClient, action_id: str, headers: dict[str, str], load: Load, rng: random.Random
) -> None:
    verb = "reject" if rng.random() < REJECT_SHARE else "approve"
    form = {"lane": "pending", **({"reason": "Soak: not this one."} if verb == "reject" else {})}
    response = await client.post(f"/actions/{action_id}/{verb}/", data=form, headers=headers)
    load.lead_statuses[response.status_code] += 1
    if response.status_code >= 500:
        load.lead_5xx += 1
        load.note(f"{verb} {action_id}: {response.status_code} {response.text[:300]}")
        return
    text = response.text
    if response.status_code == 200 and 'class="message success"' in text:
        load.decisions_won[verb] += 1
        if action_id in load.decided_ids:
            load.note(f"{action_id} won twice by the lead client")
        load.decided_ids[action_id] = verb
    elif response.status_code == 200 and "Already decided" in text:
        load.clicks_lost += 1
    else:
        load.note(f"{verb} {action_id}: {response.status_code} {text[:300]}")


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# ---------------------------------------------------------------- the reconciliation


@dataclass
class Row:
    what: str
    client: int | str
    database: int | str
    audit: int | str

    @property
    def agrees(self) -> bool:
        values = [v for v in (self.client, self.database, self.audit) if v != "-"]
        return len(set(values)) <= 1


@dataclass
class Reconciliation:
    rows: list[Row]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and all(row.agrees for row in self.rows)

    def table(self) -> str:
        width = max(len(row.what) for row in self.rows)
        lines = [f"{'':{width}}  {'load client':>12}  {'actions table':>13}  {'audit trail':>11}  agree"]
        for row in self.rows:
            lines.append(
                f"{row.what:{width}}  {row.client!s:>12}  {row.database!s:>13}  {row.audit!s:>11}  "
                f"{'yes' if row.agrees else 'NO'}"
            )
        lines.append("problems: " + ("none" if not self.problems else "; ".join(self.problems[:10])))
        return "\n".join(lines)


def reconcile(fleet: Fleet, load: Load) -> Reconciliation:
    """Compare the clients' counts with the actions table and the audit trail."""
    from django.db.models import Count

    from approvals.models import Action, Decision, DecisionVerdict
    from approvals.rules.lifecycle import Status
    from audit.models import AuditEvent

    actions = Action.objects.filter(agent__department_id=fleet.department_id)
    stored = dict(actions.values_list("idempotency_key", "pk"))
    ids = {str(pk) for pk in stored.values()}
    doubled_keys = list(
        actions.values("idempotency_key").annotate(n=Count("pk")).filter(n__gt=1).values_list("idempotency_key", "n")
    )

    def events(verb: str, **extra: Any) -> tuple[int, int]:
        query = AuditEvent.objects.filter(object_type="approvals.action", object_id__in=ids, verb=verb, **extra)
        return query.count(), query.values("object_id").distinct().count()

    proposed, proposed_distinct = events("action.proposed")
    approved_events, _ = events("action.approved", actor_kind="user")
    rejected_events, _ = events("action.rejected", actor_kind="user")
    decisions = Decision.objects.filter(action__in=actions)
    approvals = decisions.filter(verdict=DecisionVerdict.APPROVE).count()
    rejections = decisions.filter(verdict=DecisionVerdict.REJECT).count()
    statuses = Counter(actions.values_list("status", flat=True))

    problems = []
    answered = sum(n for code, n in load.proposal_statuses.items() if code in (200, 201))
    if answered != load.sent:
        problems.append(f"{load.sent - answered} proposals without a 200/201: {dict(load.proposal_statuses)}")
    missing = [key for key in load.created if key not in stored]
    if missing:
        problems.append(f"{len(missing)} answered proposals not in the table, e.g. {missing[:3]}")
    wrong_id = [key for key, pk in load.created.items() if key in stored and str(stored[key]) != pk]
    if wrong_id:
        problems.append(f"{len(wrong_id)} keys whose stored action is not the one answered, e.g. {wrong_id[:3]}")
    extra = sorted(set(stored) - set(load.created))
    if extra:
        problems.append(f"{len(extra)} stored actions no client was told of, e.g. {extra[:3]}")
    if doubled_keys:
        problems.append(f"idempotency keys with more than one action: {doubled_keys[:3]}")
    if proposed != proposed_distinct:
        problems.append(f"{proposed - proposed_distinct} doubled action.proposed events")
    if load.agent_5xx or load.lead_5xx:
        problems.append(f"5xx answers: {load.agent_5xx} to agents, {load.lead_5xx} to leads")
    if load.transport_errors:
        problems.append(f"{len(load.transport_errors)} transport errors, e.g. {load.transport_errors[:2]}")
    if set(load.replays) - {"same"}:
        problems.append(f"replays: {dict(load.replays)}")
    decided_statuses = {
        str(pk): status for pk, status in actions.filter(pk__in=list(load.decided_ids)).values_list("pk", "status")
    }
    mismatched = [
        pk
        for pk, verb in load.decided_ids.items()
        if decided_statuses.get(pk) != (Status.APPROVED if verb == "approve" else Status.REJECTED)
    ]
    if mismatched:
        problems.append(f"{len(mismatched)} decisions the lead won but the action does not show, e.g. {mismatched[:3]}")
    if load.unexpected:
        problems.append(f"odd answers: {load.unexpected[:3]}")

    dash = "-"
    rows = [
        Row("proposals (idempotency keys)", load.sent, len(stored), proposed_distinct),
        Row("actions created (one per key)", len(load.created), len(ids), proposed),
        Row("approved by a lead", load.decisions_won["approve"], approvals, approved_events),
        Row("  action status approved", load.decisions_won["approve"], statuses[Status.APPROVED], dash),
        Row("rejected by a lead", load.decisions_won["reject"], rejections, rejected_events),
        Row("  action status rejected", load.decisions_won["reject"], statuses[Status.REJECTED], dash),
        Row(
            "still pending",
            len(load.created) - len(load.decided_ids),
            statuses[Status.PENDING],
            proposed - approved_events - rejected_events,
        ),
        Row("5xx answers", load.agent_5xx + load.lead_5xx, dash, dash),
    ]
    return Reconciliation(rows, problems)


def summary(load: Load) -> str:
    """The load side in a few lines."""
    return "\n".join(
        [
            f"{load.sent} proposals in {load.elapsed:.1f} s ({load.achieved_rate:.1f}/s, target {load.rate:g}/s); "
            f"POST p50 {load.percentile(0.5):.0f} ms, p99 {load.percentile(0.99):.0f} ms; "
            f"{load.late_starts} started over 1 s late",
            f"answers {dict(sorted(load.proposal_statuses.items()))}; replays {dict(load.replays)}; "
            f"retries {load.retries}; transport errors {len(load.transport_errors)}",
            f"leads: {load.queue_reads} queue reads, {sum(load.decisions_won.values())} decisions won, "
            f"{load.clicks_lost} clicks lost to another lead; answers {dict(sorted(load.lead_statuses.items()))}",
        ]
    )


def new_run_id() -> str:
    return secrets.token_hex(3)
