"""A mass disconnect: how many channel-layer group memberships stay behind.

    .venv/bin/python bench/disconnect_bench.py [--waiters 950] [--pages 1000] [--workers 2]
                                                                     [--database countersign_waitbench] [--json PATH]

The web process as the Procfile runs it (bench/parked.py: uvicorn
config.asgi:application --workers N, production variables, PostgreSQL and
Redis database 7). Then, all at once:

- `--waiters` agents' requests `GET /api/v1/actions/<id>/?wait=60` park, each
  on a pending action of its own (in its action's group);
- `--pages` lead pages are open, each with its two sockets as the page
  opens them: /ws/queue/ (in its departments' groups) and /ws/alerts/ (in
  its alert groups), spread over four leads logged in through the form.

Every one of those connections is then dropped at the same moment, without
a goodbye (a TCP reset, as a crashed browser, a killed agent or a lost
network leave them). The group sizes (ZCARD of each group's sorted set in
Redis) are read right after, and every quarter second until none is left
or `--watch` seconds pass. Prints numbers (and with --json writes them);
asserts nothing. Raises its open-files limit as far as it may.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from typing import Any

from _setup import django_on_postgres, write_json
from parked import (
    Waiter,
    WebOnly,
    forget_redis_keys,
    gather_quietly,
    group_members,
    raise_open_files_limit,
    seed,
    until,
)
from queue_live import LOGINS_IN_FLIGHT, _log_in

LEADS = 4
OPEN_TIMEOUT = 180.0  # for every waiter and socket to be in its groups, on a busy machine
CONNECTING_AT_ONCE = 50
KINDS = ("action", "department", "alerts")  # group names start with these (approvals.live)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=950)
    parser.add_argument("--pages", type=int, default=1000, help="lead pages, each with a queue and an alert socket")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn --workers (WEB_CONCURRENCY)")
    parser.add_argument("--watch", type=float, default=30.0, help="seconds to watch the groups empty")
    parser.add_argument("--database", default="countersign_waitbench")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()

    open_files = raise_open_files_limit()
    django_on_postgres(args.database)
    pending, _leads = seed(args.waiters, n_leads=LEADS)
    with WebOnly(args.workers) as server:
        try:
            results = asyncio.run(_drive(server, pending, args))
        finally:
            forget_redis_keys(server.channels_prefix)
    results.update(open_files_limit=open_files, load_average=os.getloadavg())
    _report(results)
    write_json(args.json, results)


def _by_kind(prefix: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for group, size in group_members(prefix).items():
        counts[group.split(".", 1)[0]] += size
    return {kind: counts[kind] for kind in KINDS}


async def _drive(server: WebOnly, pending: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    import websockets

    logins = asyncio.Semaphore(LOGINS_IN_FLIGHT)
    sessions = await asyncio.gather(*(_log_in(server.url, f"queue-lead-{i}", logins) for i in range(LEADS)))
    ws_url = server.url.replace("http", "ws")
    connecting = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def open_socket(path: str, session: str) -> Any:
        async with connecting:
            ws = await websockets.connect(
                ws_url + path,
                origin=server.url,
                additional_headers={"Cookie": f"sessionid={session}"},
                open_timeout=60,
                max_size=None,
            )
            await asyncio.wait_for(ws.recv(), 60)  # the hello, or the badge: it has joined its groups
            return ws

    started = time.monotonic()
    sockets = await asyncio.gather(
        *(open_socket(path, sessions[n % LEADS]) for n in range(args.pages) for path in ("/ws/queue/", "/ws/alerts/"))
    )
    waiters = [Waiter(server.port, one) for one in pending]
    tasks = [asyncio.create_task(waiter.run()) for waiter in waiters]
    if not await until(lambda: _by_kind(server.channels_prefix)["action"] >= len(waiters), OPEN_TIMEOUT, every=0.5):
        raise RuntimeError(f"waiters did not all park: {_by_kind(server.channels_prefix)}")
    open_s = time.monotonic() - started
    await asyncio.sleep(1.0)
    joined = _by_kind(server.channels_prefix)

    # All at once: no await between the resets.
    for ws in sockets:
        ws.transport.abort()
    for waiter in waiters:
        waiter.hang_up()
    dropped = time.monotonic()
    series = [(0.0, _by_kind(server.channels_prefix))]
    while sum(series[-1][1].values()) and time.monotonic() - dropped < args.watch:
        await asyncio.sleep(0.25)
        series.append((round(time.monotonic() - dropped, 2), _by_kind(server.channels_prefix)))
    await gather_quietly(tasks)
    empty_after = series[-1][0] if not sum(series[-1][1].values()) else None
    return {
        "waiters": len(waiters),
        "pages": args.pages,
        "sockets": len(sockets),
        "workers": args.workers,
        "open_s": round(open_s, 1),
        "joined": joined,
        "right_after": series[0][1],
        "after_1s": _at(series, 1.0),
        "after_5s": _at(series, 5.0),
        "left_at_end": series[-1][1],
        "empty_after_s": empty_after,
        "watched_s": args.watch,
        "series": series,
    }


def _at(series: list[tuple[float, dict[str, int]]], seconds: float) -> dict[str, int]:
    """The first reading at or after `seconds`, or the last one (all gone by then)."""
    return next((sizes for at, sizes in series if at >= seconds), series[-1][1])


def _report(r: dict[str, Any]) -> None:
    print(
        f"\n{r['waiters']:,} parked waiters and {r['pages']:,} lead pages ({r['sockets']:,} sockets) on"
        f" {r['workers']} uvicorn workers, dropped at once (all open after {r['open_s']:.0f} s;"
        f" load average {r['load_average'][0]:.2f})"
    )
    print(f"{'group memberships':<22} " + " ".join(f"{kind:>11}" for kind in KINDS))
    rows = ("joined", "right_after", "after_1s", "after_5s", "left_at_end")
    for row in rows:
        print(f"{row.replace('_', ' '):<22} " + " ".join(f"{r[row][kind]:>11,}" for kind in KINDS))
    if r["empty_after_s"] is None:
        print(f"still not empty after {r['watched_s']:.0f} s")
    else:
        print(f"every group empty {r['empty_after_s']:.2f} s after the drop")


if __name__ == "__main__":
    main()
