"""What a parked GET ?wait=N holds on the real ASGI server (config.asgi): no
thread and no database connection of its own while it waits; and no
channel-layer membership once it ended, whether answered or hung up on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.db import connection

from approvals import live, services
from approvals.models import Action
from tests.api.test_api_keys import assert_error
from tests.api.test_api_long_poll import api, in_own_thread, propose  # noqa: F401  (fixture)
from tests.api.test_api_throttle_window import clock  # noqa: F401  (fixture)
from tests.support import groups
from tests.support.servers import wait_for

WAITERS = 30
PARK_TIMEOUT = 20.0  # for every waiter to be in the action's group, on a busy machine
LEAVE_TIMEOUT = 5.0  # "within seconds"


class RawWaiter:
    """GET ?wait=N on a socket of its own, which can hang up at once (an RST), as a killed agent does."""

    def __init__(self, port: int, key: str, action_id: str, wait: int = 30) -> None:
        self.port, self.key, self.action_id, self.wait = port, key, action_id, wait
        self.writer: asyncio.StreamWriter | None = None

    async def answer(self) -> bytes:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"GET /api/v1/actions/{self.action_id}/?wait={self.wait} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {self.key}\r\nConnection: close\r\n\r\n".encode()
        )
        return await reader.read()

    def hang_up(self) -> None:
        assert self.writer is not None
        self.writer.transport.abort()


def in_group(action_id: str) -> int:
    return groups.total(live.action_group(action_id))


def checked_out_connections() -> int:
    """Connections of the server's pool lent out right now (this test's own among them)."""
    stats = connection.pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


async def park(waiters: list[RawWaiter], action_id: str) -> list[asyncio.Task[bytes]]:
    answers = [asyncio.create_task(waiter.answer()) for waiter in waiters]
    deadline = time.monotonic() + PARK_TIMEOUT
    while in_group(action_id) < len(waiters):
        assert time.monotonic() < deadline, f"only {in_group(action_id)} of {len(waiters)} waiters parked"
        assert not any(answer.done() for answer in answers), "a waiter was answered before anything happened"
        await asyncio.sleep(0.05)
    return answers


def test_it_parks_waiters_without_a_thread_or_a_database_connection_each(
    asgi_server,
    api,  # noqa: F811
    lead,
):
    # The agent API's door runs a few requests at once, each on a kept thread
    # (config.agent_api.Lanes): a waiter parked on a thread would hold one of them.
    action_id = propose(api)
    waiters = [RawWaiter(asgi_server.port, api.headers["Authorization"], action_id) for _ in range(WAITERS)]
    # The proposal's routing (a task run in-process here) goes out from the
    # server's loop after its answer, with a connection of the pool: done
    # before the count starts, so the pool's count is the waiters' alone.
    wait_for(lambda: Action.objects.filter(pk=action_id, routed_at__isnull=False).exists(), what="the routing")
    connection.close()  # this test's own, so the pool's count is the server's
    threads_before = threading.active_count()
    requests_before = connection.pool.get_stats().get("requests_num", 0)

    async def main() -> tuple[int, int, list[bytes]]:
        answers = await park(waiters, action_id)
        # Each waiter reads its action twice (its first pass, then once more after
        # joining the group): once all those reads have asked the pool for a
        # connection, they must all have given it back. A parked waiter holding
        # one keeps it, and this times out.
        await asyncio.to_thread(
            wait_for,
            lambda: (
                connection.pool.get_stats().get("requests_num", 0) - requests_before >= 2 * WAITERS
                and checked_out_connections() <= 1
            ),
            what="the waiters' reads to end",
        )
        threads, lent = threading.active_count(), checked_out_connections()
        await asyncio.to_thread(in_own_thread, lambda: services.approve(action_id, lead))
        return threads, lent, await asyncio.gather(*answers)

    threads, lent, answers = asyncio.run(main())
    print(f"{WAITERS} parked: {threads - threads_before} threads more, {lent} pooled connections lent out")
    assert all(b" 200 OK" in answer and b'"status":"approved"' in answer for answer in answers)
    # Before: a thread per waiter. Now the loop's shared executor and two kept request threads.
    assert threads - threads_before < WAITERS // 3
    assert lent <= 1
    wait_for(lambda: in_group(action_id) == 0, timeout=LEAVE_TIMEOUT, what="the answered waiters to leave the group")


@pytest.mark.parametrize("hang_ups", [1, WAITERS])
def test_it_leaves_the_group_within_seconds_when_waiters_hang_up(asgi_server, api, hang_ups, settings):  # noqa: F811
    # Fewer Redis connections than waiters leaving at once (a thousand on the
    # default pool): the leaving waits its turn for one, it does not fail.
    groups.with_pool_of(settings, 3)
    action_id = propose(api)
    waiters = [RawWaiter(asgi_server.port, api.headers["Authorization"], action_id) for _ in range(WAITERS)]

    async def main() -> None:
        answers = await park(waiters, action_id)
        for waiter in waiters[:hang_ups]:
            waiter.hang_up()
        deadline = time.monotonic() + LEAVE_TIMEOUT
        while in_group(action_id) > WAITERS - hang_ups:
            assert time.monotonic() < deadline, f"{in_group(action_id) - (WAITERS - hang_ups)} memberships left"
            await asyncio.sleep(0.05)
        for waiter in waiters[hang_ups:]:
            waiter.hang_up()
        await asyncio.gather(*answers, return_exceptions=True)

    asyncio.run(main())
    wait_for(lambda: in_group(action_id) == 0, timeout=LEAVE_TIMEOUT, what="every waiter to leave the group")


def test_it_counts_a_parked_request_once_against_the_rate_limit(asgi_server, api, agent, clock):  # noqa: F811
    # Three requests a minute: the proposal, the parked GET (both its passes), one more.
    action_id = propose(api)
    waiter = RawWaiter(asgi_server.port, api.headers["Authorization"], action_id, wait=1)
    answer = asyncio.run(waiter.answer())
    assert b" 200 OK" in answer and b'"status":"pending"' in answer
    assert api.get(f"/api/v1/actions/{action_id}/").status_code == 200
    assert_error(api.get(f"/api/v1/actions/{action_id}/"), 429, "throttled")
