"""Fault: the app's PostgreSQL connections dropped (pg_terminate_backend).

Once at the worst moment, inside a proposal's transaction between the
action's row and its audit event; then again and again under a stream of
proposals through the real server (uvicorn, the connection pool). Either
way the agent gets a clean answer (503 in the error shape, with
Retry-After), nothing is half-written (no action without its audit event),
and retrying with the same idempotency key stores the proposal exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.db import connection

from approvals.models import Action
from approvals.services import proposals
from audit.models import AuditEvent
from tests.api.test_api_keys import new_key, post_json
from tests.api.test_api_proposals import ACTIONS, granted, refund
from tests.support.servers import ASGIServerThread

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 4
PROPOSALS_PER_CLIENT = 10
KILL_EVERY_SECONDS = 0.2
KILL_ROUNDS = 10
RETRY_DEADLINE_SECONDS = 20


@pytest.fixture(autouse=True)
def no_dead_connection_left_in_the_pool() -> Iterator[None]:
    """These tests kill connections the pool holds idle. A dead one left
    there would be drawn by the next test's own first query (a fixture's,
    before any code of ours could answer it with a 503): so give back this
    thread's connection and let the pool test and replace its idle ones,
    before and after each test."""
    drop_dead_pooled_connections()
    yield
    drop_dead_pooled_connections()


def drop_dead_pooled_connections() -> None:
    connection.close()  # a broken connection given back is discarded by the pool
    pool = getattr(connection, "pool", None)
    if pool is not None:
        pool.check()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate_others(spared: int) -> int:
    """Drop every connection to the test database but this thread's and
    the test's own (`spared`): the server's, its in-process tasks'."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid NOT IN (pg_backend_pid(), %s) AND backend_type = 'client backend'",
            [spared],
        )
        return cursor.fetchone()[0]


def assert_whole(agent: Any) -> None:
    """Every action has exactly its one proposal event, and no event lacks its action."""
    actions = {str(pk) for pk in Action.objects.filter(agent=agent).values_list("pk", flat=True)}
    events = Counter(AuditEvent.objects.filter(verb="action.proposed").values_list("object_id", flat=True))
    assert set(events) == actions
    assert set(events.values()) <= {1}


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Retry-After"] == "1"
    body = response.json()
    assert body["error"]["code"] == "unavailable"
    assert "idempotency key" in body["error"]["message"]


@pytest.fixture
def dropped_mid_proposal(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The next proposal's connection is terminated after its action row and
    audit event are written and before its commit: PostgreSQL kills the
    backend and the half-done transaction with it."""
    real_record_insert = proposals.record_insert
    dropped: list[str] = []

    def record_insert(verb: str, *args: Any, **kwargs: Any) -> Any:
        event = real_record_insert(verb, *args, **kwargs)
        if verb == "action.proposed" and not dropped:
            dropped.append(verb)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return event

    monkeypatch.setattr(proposals, "record_insert", record_insert)
    return dropped


def test_a_connection_dropped_inside_a_proposal_writes_nothing_and_the_retry_stores_it_once(
    agent, client, dropped_mid_proposal, short_lived_db_connections
):
    granted(agent)
    key = new_key(agent)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "order-A-1001"}

    first = post_json(client, ACTIONS, refund(), headers=headers)

    assert dropped_mid_proposal  # the fault did fire, inside the transaction
    assert_unavailable(first)
    assert not Action.objects.exists()  # the action's row went with the transaction
    assert not AuditEvent.objects.filter(verb="action.proposed").exists()

    retried = post_json(client, ACTIONS, refund(), headers=headers)
    again = post_json(client, ACTIONS, refund(), headers=headers)

    assert retried.status_code == 201, retried.content
    assert (again.status_code, again.json()["id"]) == (200, retried.json()["id"])
    assert Action.objects.count() == 1
    assert_whole(agent)


def test_a_dropped_connection_is_a_clean_503_on_any_agent_call(agent, client, short_lived_db_connections, monkeypatch):
    """Even authentication, the first query of every call, answers in the error shape."""
    from django.db import OperationalError

    from agents.authentication import AgentKeyAuthentication

    key = new_key(agent)

    def dropped(*args: Any) -> None:
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(AgentKeyAuthentication, "_valid_key", staticmethod(dropped))
    assert_unavailable(client.get(ACTIONS, headers={"Authorization": f"Bearer {key}"}))


@pytest.fixture
def server(real_services, short_lived_db_connections, eager_tasks) -> Iterator[ASGIServerThread]:
    from config.asgi import application

    with ASGIServerThread(application) as running:
        yield running


def test_proposals_keep_their_promise_while_connections_are_dropped_again_and_again(agent, server):
    granted(agent)
    key = new_key(agent)
    codes: Counter[int] = Counter()
    final: dict[str, str] = {}
    lock = threading.Lock()
    done = threading.Event()
    start = threading.Barrier(CLIENTS + 1)

    def agent_at_work(n: int) -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            start.wait()
            for i in range(PROPOSALS_PER_CLIENT):
                idempotency_key = f"client-{n}-order-{i}"
                deadline = time.monotonic() + RETRY_DEADLINE_SECONDS
                while True:  # an agent retrying with its key, as the 503 says
                    try:
                        answer = http.post(ACTIONS, json=refund(), headers={"Idempotency-Key": idempotency_key})
                    except httpx.TransportError:
                        code = 0  # the connection to the server itself broke: retry as well
                    else:
                        code = answer.status_code
                        if code == 503:
                            body = answer.json()
                            assert body["error"]["code"] == "unavailable", body
                    with lock:
                        codes[code] += 1
                    if code in (200, 201):
                        final[idempotency_key] = answer.json()["id"]
                        break
                    assert code in (0, 503), answer.text[:300]
                    assert time.monotonic() < deadline, f"{idempotency_key} never went through"
                    time.sleep(0.05)

    test_connection = backend_pid()

    def killer() -> None:
        start.wait()
        try:
            for _ in range(KILL_ROUNDS):  # then PostgreSQL settles, and every key must go through
                if done.is_set():
                    return
                time.sleep(KILL_EVERY_SECONDS)
                terminate_others(test_connection)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=CLIENTS + 1) as pool:
        dropping = pool.submit(killer)
        agents = [pool.submit(agent_at_work, n) for n in range(CLIENTS)]
        try:
            for future in agents:
                future.result()
        finally:
            done.set()
            dropping.result()

    print(f"answers by status (0: the connection broke): {dict(codes)}")
    expected = CLIENTS * PROPOSALS_PER_CLIENT
    assert len(final) == expected
    assert codes[503] > 0, codes  # the fault did bite
    assert set(codes) <= {0, 200, 201, 503}, codes  # never a 500
    # Exactly once: one action per key, each with its one audit event.
    stored = dict(Action.objects.filter(agent=agent).values_list("idempotency_key", "pk"))
    assert len(stored) == expected
    assert {k: str(v) for k, v in stored.items()} == final
    assert_whole(agent)


def test_connections_dropped_while_idle_cost_at_most_a_pool_of_503s(agent, server, settings):
    """PostgreSQL restarted, or every connection dropped between requests:
    each dead connection the pool still holds costs one clean 503 (the pool
    then discards it); the calls after are served on fresh connections."""
    granted(agent)
    pool_size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {new_key(agent)}"}, timeout=30) as http:
        warm = [http.post(ACTIONS, json=refund()).status_code for _ in range(4)]
        assert warm == [201] * 4
        assert terminate_others(backend_pid()) > 0

        # The pool hands its connections out in no promised order, so the dead
        # ones may come up between fresh ones: each costs one 503, and only once.
        after: list[int] = []
        while after[-4:] != [201] * 4 and len(after) < 2 * pool_size + 4:
            after.append(http.post(ACTIONS, json=refund()).status_code)

    assert set(after) <= {201, 503}, after
    assert after.count(503) <= pool_size, after
    assert after[-4:] == [201] * 4, after
    assert_whole(agent)
