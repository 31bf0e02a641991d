"""A thousand decisions racing over a hundred actions, through the real app.

Five leads, logged in through /login/ like a browser, fire 1,000 approve and
reject POSTs at the lead UI (uvicorn, PostgreSQL, Redis channel layer) over
100 pending actions, a fifth of them critical; the attempts on one action are
sent together, so they overlap in the server. Then many threads try to start
the dispatch of every action at once. Per action, whatever the interleaving:
its status moved once, exactly one decision won (two approvals from two
different leads for a critical one), nobody decided twice, and it was
dispatched at most once: once if approved, never if rejected.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.db import connection

from agents.models import Tier
from approvals import services
from approvals.models import Action, Decision, DecisionVerdict, Execution, GatewayState, Risk
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.factories import PASSWORD, ActionTypeFactory, GrantFactory, UserFactory
from tests.support.servers import CLIENT_KEEPALIVE_SECONDS

pytestmark = pytest.mark.django_db(transaction=True)

ACTIONS = 100
CRITICAL_EVERY = 5  # every fifth action is critical: two approvals from two leads
ATTEMPTS = 1_000
IN_FLIGHT = 24  # requests the leads have open at once (each holds a database connection)
DISPATCHERS = 8  # threads trying to start each approved action's dispatch
FINAL_MOVES = ("action.approved", "action.rejected")


@dataclass(frozen=True)
class Attempt:
    lead: int
    action_id: str
    verb: str  # approve | reject

    @property
    def path(self) -> str:
        return f"/actions/{self.action_id}/{self.verb}/"

    @property
    def form(self) -> dict[str, str]:
        return {"reason": "Racing the others."} if self.verb == "reject" else {}


@pytest.fixture
def leads(lead, other_lead, department) -> list:
    extra = [UserFactory(username=f"racing-lead-{n}") for n in range(3)]
    department.leads.add(*extra)
    return [lead, other_lead, *extra]


@pytest.fixture
def waiting(agent, leads, eager_tasks) -> list[Action]:
    """100 pending actions, proposed through the service layer (and routed)."""
    low = ActionTypeFactory(slug="payments.refund", risk=Risk.LOW)
    critical = ActionTypeFactory(slug="records.delete", risk=Risk.CRITICAL)
    for action_type in (low, critical):
        GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    GatewayState.current()  # the singleton exists in any running gateway
    actions = []
    for n in range(ACTIONS):
        action_type = critical if n % CRITICAL_EVERY == 0 else low
        action, _ = services.propose(
            agent, action_type, payload={"note": f"order {n}"}, reasoning="Charged twice.", confidence=Decimal("0.9")
        )
        assert action.status == Status.PENDING
        actions.append(action)
    return actions


def attempts_for(actions: list[Action], n_leads: int, rng: random.Random) -> list[Attempt]:
    """ATTEMPTS attempts, the same number per action, grouped by action so
    that the attempts on one action are in flight together. Low-risk actions
    get random approvals and rejections. Every lead tries to approve each
    critical action, so two of them can complete it; half the critical ones
    get random attempts on top, the other half every lead's approval twice
    (which must end approved by exactly two of them)."""
    per_action = ATTEMPTS // len(actions)
    attempts = []
    for action in actions:
        mine = []
        if action.action_type.risk == Risk.CRITICAL:
            mine = [Attempt(lead, str(action.pk), "approve") for lead in range(n_leads)]
            if approvals_only(action, actions):
                mine *= per_action // n_leads
        while len(mine) < per_action:
            mine.append(Attempt(rng.randrange(n_leads), str(action.pk), rng.choice(("approve", "reject"))))
        rng.shuffle(mine)
        attempts.extend(mine)
    return attempts


def approvals_only(action: Action, actions: list[Action]) -> bool:
    return actions.index(action) % (2 * CRITICAL_EVERY) == 0


@pytest.fixture
def browsers(asgi_server, leads) -> Iterator[list[httpx.Client]]:
    """One logged-in browser per lead: session cookie from a real login POST,
    CSRF token sent back in the header, as the page's htmx does."""
    clients = [_logged_in(asgi_server.url, lead.username) for lead in leads]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def _logged_in(base_url: str, username: str) -> httpx.Client:
    limits = httpx.Limits(
        max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT, keepalive_expiry=CLIENT_KEEPALIVE_SECONDS
    )
    client = httpx.Client(base_url=base_url, timeout=60, limits=limits)
    client.get("/login/")
    token = client.cookies[settings.CSRF_COOKIE_NAME]
    answer = client.post("/login/", data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert answer.status_code == 302 and settings.SESSION_COOKIE_NAME in client.cookies, answer.text[:300]
    # Logging in rotates the CSRF token.
    client.headers["X-CSRFToken"] = client.cookies[settings.CSRF_COOKIE_NAME]
    return client


def storm(browsers: list[httpx.Client], attempts: list[Attempt]) -> Counter[int]:
    """Send every attempt, IN_FLIGHT at a time, all released together; the status codes."""
    start = threading.Barrier(IN_FLIGHT)
    ordered = iter(attempts)
    lock = threading.Lock()
    codes: Counter[int] = Counter()

    def lead_at_work() -> None:
        start.wait()
        while True:
            with lock:
                attempt = next(ordered, None)
            if attempt is None:
                return
            code = browsers[attempt.lead].post(attempt.path, data=attempt.form).status_code
            with lock:
                codes[code] += 1

    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        for future in [pool.submit(lead_at_work) for _ in range(IN_FLIGHT)]:
            future.result()
    return codes


def dispatch_all_at_once(actions: list[Action]) -> None:
    """DISPATCHERS threads per action, each calling services.start_dispatch on
    its own database connection, all released together."""
    jobs = [action.pk for action in actions for _ in range(DISPATCHERS)]
    random.Random(2).shuffle(jobs)
    start = threading.Barrier(IN_FLIGHT)

    def dispatcher(share: list) -> None:
        try:
            start.wait()
            for action_id in share:
                services.start_dispatch(action_id)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        for future in [pool.submit(dispatcher, jobs[i::IN_FLIGHT]) for i in range(IN_FLIGHT)]:
            future.result()


def test_it_decides_each_action_once_and_dispatches_it_at_most_once(waiting, leads, browsers):
    attempts = attempts_for(waiting, len(leads), random.Random(1))
    assert len(attempts) == ATTEMPTS

    codes = storm(browsers, attempts)
    # Every attempt was answered (a refusal is a redirect with a message), none crashed.
    assert codes == {302: ATTEMPTS}

    dispatch_all_at_once(waiting)

    outcomes: Counter[str] = Counter()
    for action in waiting:
        action.refresh_from_db()
        outcomes[f"{action.action_type.risk} {action.status}"] += 1
        assert_decided_once(action)
        assert_dispatched_at_most_once(action)
        if approvals_only(action, waiting):
            assert action.status == Status.DISPATCHING
    # Both outcomes won some of the races, or the race proved little.
    assert outcomes["low dispatching"] and outcomes["low rejected"], outcomes


def assert_decided_once(action: Action) -> None:
    decisions = list(Decision.objects.filter(action=action))
    voters = [decision.user_id for decision in decisions]
    assert len(voters) == len(set(voters)), f"{action.pk}: a lead decided twice"
    moves = list(AuditEvent.objects.for_object(action).filter(verb__in=FINAL_MOVES).values_list("verb", flat=True))
    verdicts = Counter(decision.verdict for decision in decisions)
    required = action.action_type.approvals_required
    if action.status == Status.REJECTED:
        assert moves == ["action.rejected"], (action.pk, moves)
        # The winning rejection, and for a critical action perhaps one first approval before it.
        assert verdicts[DecisionVerdict.REJECT] == 1 and verdicts[DecisionVerdict.APPROVE] <= required - 1
    else:
        # Approved, and already claimed for dispatch below.
        assert action.status == Status.DISPATCHING, (action.pk, action.status)
        assert moves == ["action.approved"], (action.pk, moves)
        assert verdicts == {DecisionVerdict.APPROVE: required}, (action.pk, verdicts)
    assert action.decided_at is not None


def assert_dispatched_at_most_once(action: Action) -> None:
    executions = Execution.objects.filter(action=action).count()
    started = AuditEvent.objects.for_object(action).filter(verb="action.dispatch_started").count()
    expected = 1 if action.status == Status.DISPATCHING else 0
    assert (executions, started) == (expected, expected), (action.pk, action.status, executions, started)
