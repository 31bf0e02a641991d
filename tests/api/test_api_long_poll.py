"""GET /api/v1/actions/<id>/?wait=N on the real ASGI server: the answer comes
as soon as the action leaves pending (approve, reject, cancel, expire), or
after N seconds; routing's own pending message wakes nobody; many waiters
park on the event loop, not on server threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import AsyncToSync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from agents.models import Agent
from approvals import live, services
from approvals.models import Action, ActionType, Risk
from tests.api.test_api_keys import assert_error, new_key
from tests.api.test_api_proposals import ACTIONS, granted, refund
from tests.support.factories import AgentFactory, UserFactory
from tests.support.servers import ASGIServerThread

PARKED = 0.5  # long enough for a waiter to subscribe before the decision lands
PROMPT = 2.0  # a woken waiter answers within this after the decision
AT_ONCE = 1.0  # an answer that does not wait at all (generous: CI machines stall)


@pytest.fixture
def api(asgi_server: ASGIServerThread, agent: Agent) -> Iterator[httpx.Client]:
    granted(agent)
    with httpx.Client(
        base_url=asgi_server.url, headers={"Authorization": f"Bearer {new_key(agent)}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def propose(api: httpx.Client, **overrides: Any) -> str:
    response = api.post(ACTIONS, json=refund(**overrides))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return response.json()["id"]


def waiting(api: httpx.Client, pool: ThreadPoolExecutor, action_id: str, wait: int) -> Future[tuple[Any, float]]:
    """Start a long poll in the background; its future gives (response, monotonic time of the answer)."""

    def get() -> tuple[Any, float]:
        response = api.get(f"{ACTIONS}{action_id}/", params={"wait": wait})
        return response, time.monotonic()

    return pool.submit(get)


def in_own_thread(call: Callable[[], Any]) -> None:
    """Run a service call as another process would: its own thread, its own connection."""

    def run() -> None:
        try:
            call()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=15)


def _approve(action_id: str, lead: Any, api: httpx.Client) -> None:
    services.approve(action_id, lead, comment="Looks right.")


def _reject(action_id: str, lead: Any, api: httpx.Client) -> None:
    services.reject(action_id, lead, reason="Not this customer.")


def _cancel(action_id: str, lead: Any, api: httpx.Client) -> None:
    assert api.post(f"{ACTIONS}{action_id}/cancel/").status_code == 200


def _expire(action_id: str, lead: Any, api: httpx.Client) -> None:
    services.expire(action_id)


@pytest.mark.parametrize(
    ("decide", "status"),
    [(_approve, "approved"), (_reject, "rejected"), (_cancel, "cancelled"), (_expire, "expired")],
)
def test_it_answers_a_waiter_as_soon_as_the_action_leaves_pending(api, background, lead, decide, status):
    action_id = propose(api)
    started = time.monotonic()
    answer = waiting(api, background, action_id, wait=10)
    time.sleep(PARKED)
    assert not answer.done(), "the waiter answered before anything happened"

    decided = time.monotonic()
    in_own_thread(lambda: decide(action_id, lead, api))
    response, answered = answer.result(timeout=15)

    latency = answered - decided
    print(f"long-poll wake-up after {status}: {latency * 1000:.0f} ms")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (action_id, status)
    assert answered - started >= PARKED  # it really waited...
    assert latency < PROMPT  # ...and woke at once, far from the 10 s timeout


def test_it_answers_at_once_for_an_action_already_decided(api, lead):
    action_id = propose(api)
    services.approve(action_id, lead)
    started = time.monotonic()
    response = api.get(f"{ACTIONS}{action_id}/", params={"wait": 30})
    assert time.monotonic() - started < AT_ONCE
    assert response.json()["status"] == "approved"


def test_it_answers_pending_after_the_wait_runs_out(api):
    action_id = propose(api)
    started = time.monotonic()
    response = api.get(f"{ACTIONS}{action_id}/", params={"wait": 1})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert 1.0 <= elapsed < 1.0 + PROMPT


def test_it_answers_pending_after_a_wait_longer_than_one_blocking_read_of_the_layer(api):
    # channels_redis blocks 5 s per read of Redis: a quiet wait past that must still end in an answer.
    action_id = propose(api)
    started = time.monotonic()
    response = api.get(f"{ACTIONS}{action_id}/", params={"wait": 6})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text[:300]
    assert response.json()["status"] == "pending"
    assert 6.0 <= elapsed < 6.0 + PROMPT


def test_it_answers_at_once_without_a_wait(api):
    action_id = propose(api)
    for params in ({}, {"wait": 0}, {"wait": ""}):
        started = time.monotonic()
        assert api.get(f"{ACTIONS}{action_id}/", params=params).json()["status"] == "pending"
        assert time.monotonic() - started < AT_ONCE


@pytest.mark.parametrize("wait", ["61", "600", "-1", "1.5", "soon", "1e1", "²", "٣", "9" * 5000])
def test_it_refuses_a_wait_that_is_not_0_to_60_seconds(api, wait):
    action_id = propose(api)
    started = time.monotonic()
    error = assert_error(api.get(f"{ACTIONS}{action_id}/", params={"wait": wait}), 400, "invalid")
    assert set(error["fields"]) == {"wait"}
    assert time.monotonic() - started < AT_ONCE


def test_it_hides_another_agents_action_from_a_waiter(asgi_server, api, agent, department):
    stranger = AgentFactory(slug="refund-bot-2", owner=UserFactory(username="oscar-owner"), department=department)
    action_id = propose(api)
    other = httpx.Client(base_url=asgi_server.url, headers={"Authorization": f"Bearer {new_key(stranger)}"})
    with other:
        started = time.monotonic()
        assert_error(other.get(f"{ACTIONS}{action_id}/", params={"wait": 5}), 404, "not_found")
    assert time.monotonic() - started < AT_ONCE


def test_it_keeps_a_waiter_waiting_through_an_escalations_pending_message(api, background, lead):
    action_id = propose(api)
    answer = waiting(api, background, action_id, wait=10)
    time.sleep(PARKED)

    # Escalation publishes on the action's group with the status still pending:
    # listen alongside the waiter, to be sure the message really went out.
    # (A layer of our own: channels_redis lets one instance receive on one loop only.)
    def escalate() -> None:
        Action.objects.filter(pk=action_id).update(sla_deadline=timezone.now() - timedelta(seconds=1))
        assert services.escalate(action_id) is not None

    async def escalate_and_listen() -> dict[str, Any]:
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = await layer.new_channel()
        await layer.group_add(live.action_group(action_id), channel)
        try:
            await asyncio.to_thread(in_own_thread, escalate)
            return await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard(live.action_group(action_id), channel)

    assert asyncio.run(escalate_and_listen())["status"] == "pending"
    time.sleep(1.0)
    assert not answer.done(), f"woken by a pending message: {answer.result().json()['status']}"

    decided = time.monotonic()
    in_own_thread(lambda: services.approve(action_id, lead))
    response, answered = answer.result(timeout=15)
    assert response.json()["status"] == "approved"
    assert answered - decided < PROMPT


def test_it_keeps_waiting_through_the_first_of_two_approvals_of_a_critical_action(
    api, background, agent, lead, other_lead
):
    ActionType.objects.filter(slug="payments.refund").update(risk=Risk.CRITICAL)
    action_id = propose(api)
    answer = waiting(api, background, action_id, wait=10)
    time.sleep(PARKED)
    in_own_thread(lambda: services.approve(action_id, lead))
    time.sleep(1.0)
    assert not answer.done()
    in_own_thread(lambda: services.approve(action_id, other_lead))
    response, _answered = answer.result(timeout=15)
    assert response.json()["status"] == "approved"
    assert len(response.json()["decisions"]) == 2


@pytest.fixture
def blocked_threads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many threads are blocked in async_to_sync right now: each is sync
    code waiting for async code, a thread held for as long as that runs."""
    real = AsyncToSync.__call__
    lock, count = threading.Lock(), [0]

    def counting(self: AsyncToSync, *args: Any, **kwargs: Any) -> Any:
        with lock:
            count[0] += 1
        try:
            return real(self, *args, **kwargs)
        finally:
            with lock:
                count[0] -= 1

    monkeypatch.setattr(AsyncToSync, "__call__", counting)
    return lambda: count[0]


def many_waiters(url: str, key: str, action_id: str, lead: Any, blocked: Callable[[], int], waiters: int = 50) -> None:
    """`waiters` long polls at once; while they are parked, another request
    still answers at once; one approval wakes them all."""

    async def main() -> tuple[list[httpx.Response], float, float, int]:
        limits = httpx.Limits(max_connections=waiters + 5)
        headers = {"Authorization": key}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as client:
            polls = [
                asyncio.create_task(client.get(f"{ACTIONS}{action_id}/", params={"wait": 20})) for _ in range(waiters)
            ]
            await asyncio.sleep(1.5)  # all of them in and parked
            assert not any(poll.done() for poll in polls)
            held = blocked()
            started = time.monotonic()
            assert (await client.get("/api/v1/me/")).status_code == 200
            meanwhile = time.monotonic() - started
            decided = time.monotonic()
            await asyncio.to_thread(in_own_thread, lambda: services.approve(action_id, lead))
            responses = await asyncio.gather(*polls)
            return responses, time.monotonic() - decided, meanwhile, held

    responses, latency, meanwhile, held = asyncio.run(main())
    print(
        f"{waiters} waiters woken by one approval in {latency * 1000:.0f} ms; another request answered in "
        f"{meanwhile * 1000:.0f} ms meanwhile; threads blocked while they waited: {held}"
    )
    assert [r.status_code for r in responses] == [200] * waiters
    assert {r.json()["status"] for r in responses} == {"approved"}
    assert latency < PROMPT * 2
    assert meanwhile < PROMPT
    assert held < 5, f"{held} threads blocked while {waiters} requests waited"


@pytest.fixture
def async_middleware_only(asgi_server: ASGIServerThread) -> Iterator[ASGIServerThread]:
    """The Django ASGI app without the sync-only middleware of settings.MIDDLEWARE,
    to see what the long-poll view itself holds."""
    kept = [path for path in settings.MIDDLEWARE if getattr(import_string(path), "async_capable", False)]
    with override_settings(MIDDLEWARE=kept):
        app = ASGIHandler()
    with ASGIServerThread(app) as server:
        yield server


def test_it_parks_many_waiters_on_the_event_loop_not_on_threads(async_middleware_only, api, lead, blocked_threads):
    action_id = propose(api)
    many_waiters(async_middleware_only.url, api.headers["Authorization"], action_id, lead, blocked_threads)


def test_it_parks_many_waiters_without_a_thread_each_behind_the_configured_middleware(
    asgi_server, api, lead, blocked_threads
):
    action_id = propose(api)
    many_waiters(asgi_server.url, api.headers["Authorization"], action_id, lead, blocked_threads)


def test_it_wakes_many_waiters_with_one_approval(asgi_server, api, lead):
    action_id = propose(api)
    many_waiters(asgi_server.url, api.headers["Authorization"], action_id, lead, lambda: 0)
