"""Calls parked in their wait hold no database connection: more waiting
calls than the server's connection pool has connections, another call
answered meanwhile, and one approval wakes them all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from agents.models import Tier
from approvals import services
from approvals.rules.lifecycle import Status
from tests.api.test_api_keys import new_key
from tests.support import mcp_client
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.servers import wait_for

WAITERS = 20


def in_use() -> int:
    """Connections of this process's pool handed out now (the server's threads and this test's)."""
    stats = connections[DEFAULT_DB_ALIAS].pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


def settled_below(most: int) -> Callable[[], tuple[int] | None]:
    """A probe for wait_for: the connections in use, once they are at most `most`."""

    def probe() -> tuple[int] | None:
        held = in_use()
        return (held,) if held <= most else None

    return probe


def test_parked_calls_hold_no_connection_and_one_approval_wakes_them_all(asgi_server, agent, lead, settings):
    settings.MCP_WAIT_SECONDS = 30
    settings.MCP_PROGRESS_SECONDS = 30  # one progress notification each, sent as the call parks
    pool_size = connections[DEFAULT_DB_ALIAS].settings_dict["OPTIONS"]["pool"]["max_size"]
    assert pool_size < WAITERS
    parts = ActionTypeFactory(slug="parts.ship")
    GrantFactory(agent=agent, action_type=parts, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(agent, parts, payload={"note": "x"}, reasoning="y", confidence=Decimal("0.9"))
    key = new_key(agent)
    progress: list[list[Any]] = [[] for _ in range(WAITERS)]
    # Connections handed out before the calls (this test's own, and any an earlier test's
    # thread left checked out): the calls are judged by what they add.
    before = in_use()

    async def main() -> tuple[list[Any], float, int]:
        waiting = [
            asyncio.create_task(
                mcp_client.session_do(
                    asgi_server.url,
                    key,
                    mcp_client.call("countersign_check_action", {"action_id": str(action.pk), "wait": 30}, seen),
                )
            )
            for seen in progress
        ]
        await asyncio.to_thread(wait_for, lambda: all(progress), what=f"{WAITERS} parked calls")
        # A call reports progress, then subscribes and reads its action once more
        # before it parks: wait for those reads to end. A parked call holding a
        # connection keeps it, the count never comes down, and this times out.
        (held,) = await asyncio.to_thread(wait_for, settled_below(before + 1), timeout=10, what="the reads to end")
        listed = await mcp_client.session_do(asgi_server.url, key, mcp_client.list_tools)
        assert listed.tools and not any(task.done() for task in waiting)
        decided = time.monotonic()
        await asyncio.to_thread(_approve, action.pk, lead)
        results = await asyncio.gather(*waiting)
        return results, time.monotonic() - decided, held

    results, latency, held = asyncio.run(main())
    added = held - before
    print(
        f"{WAITERS} parked MCP calls, pool of {pool_size}: {added} more connection(s) in use; woken in {latency:.2f} s"
    )
    assert [result.structured_content["status"] for result in results] == [Status.APPROVED] * WAITERS
    assert added <= 1, f"{added} more connections in use while {WAITERS} calls waited"


def _approve(action_id: Any, lead: Any) -> None:
    try:
        services.approve(action_id, lead)
    finally:
        connections[DEFAULT_DB_ALIAS].close()
