"""A thousand parked long polls: what they cost the web process while nothing happens.

    .venv/bin/python bench/waiters_bench.py [--waiters 1000] [--workers 2] [--idle 10]
                                                                  [--database countersign_waitbench] [--json PATH]

The web process as the Procfile runs it (bench/parked.py: uvicorn
config.asgi:application --workers N, production variables, PostgreSQL and
Redis database 7). `--waiters` agents' requests `GET /api/v1/actions/<id>/?wait=60`,
each on a pending action of its own, park until all of them are in their
action's channel-layer group. Then, summed over the worker processes:

- resident memory and OS threads before and while parked, and their growth
  per waiter; first after the same requests without a wait were served all
  at once (a burst grows the heap by itself), then again for a second wave;
- CPU used over `--idle` seconds while they wait and nothing happens;
- PostgreSQL backends on the bench database (pooled connections, not one per waiter);
- how long a plain GET of an action takes meanwhile.

The waiters hang up at the end. Prints numbers (and with --json writes
them); asserts nothing. Raises its open-files limit as far as it may.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import httpx
from _setup import django_on_postgres, write_json
from parked import Pending, Waiter, WebOnly, forget_redis_keys, gather_quietly, group_members, seed, until

PARK_TIMEOUT = 120.0  # for all the waiters to be in their groups, on a busy machine
PROBES = 20  # plain GETs timed before and while parked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn --workers (WEB_CONCURRENCY)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of CPU measured while they wait")
    parser.add_argument("--database", default="countersign_waitbench")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()

    from parked import raise_open_files_limit

    open_files = raise_open_files_limit()
    django_on_postgres(args.database)
    pending, _leads = seed(args.waiters, n_leads=1)
    with WebOnly(args.workers) as server:
        try:
            results = asyncio.run(_measure(server, pending, args))
        finally:
            forget_redis_keys(server.channels_prefix)
    results.update(open_files_limit=open_files, load_average=os.getloadavg())
    _report(results)
    write_json(args.json, results)


async def _measure(server: WebOnly, pending: list[Pending], args: argparse.Namespace) -> dict[str, Any]:
    """First the same requests without a wait, all at once: serving a burst of
    a thousand grows the heap by itself, whether they then park or not. Then
    two waves of waiters, one after the other."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await _plain_gets(client, pending[0])  # warms every worker up
        await asyncio.sleep(2.0)
        fresh = server.usage()
        await asyncio.gather(*(Waiter(server.port, one, wait=0).run() for one in pending))
        await asyncio.sleep(2.0)
        burst = {"before": fresh.as_dict(), "after": server.usage().as_dict()}
        burst["rss_added_mb"] = round(burst["after"]["rss_mb"] - fresh.rss_mb, 1)
        waves = {}
        for wave in ("first", "second"):
            waves[wave] = await _wave(server, client, pending, args.idle)
            await until(lambda: _parked(server) == 0, PARK_TIMEOUT)
    return {"waiters": len(pending), "workers": args.workers, "idle_s": args.idle, "burst": burst, **waves}


async def _wave(server: WebOnly, client: httpx.AsyncClient, pending: list[Pending], idle: float) -> dict[str, Any]:
    before_ms = await _plain_gets(client, pending[0])
    await asyncio.sleep(2.0)  # the last requests' threads and connections settle
    before, backends_before = server.usage(), _backends()

    waiters = [Waiter(server.port, one) for one in pending]
    tasks = [asyncio.create_task(waiter.run()) for waiter in waiters]
    started = time.monotonic()
    if not await until(lambda: _parked(server) >= len(waiters), PARK_TIMEOUT, every=0.5):
        raise RuntimeError(f"only {_parked(server)} of {len(waiters)} waiters parked in {PARK_TIMEOUT:.0f} s")
    park_s = time.monotonic() - started
    await asyncio.sleep(1.0)  # the last ones' reads finish
    holding, backends_parked = server.usage(), _backends()
    await asyncio.sleep(idle)
    after_idle = server.usage()
    meanwhile_ms = await _plain_gets(client, pending[0])
    answered_early = sum(task.done() for task in tasks)
    for waiter in waiters:
        waiter.hang_up()
    await gather_quietly(tasks)
    n = len(waiters)
    return {
        "park_s": round(park_s, 2),
        "answered_before_the_end": answered_early,
        "before": before.as_dict(),
        "parked": holding.as_dict(),
        "rss_added_mb": round(holding.rss_mb - before.rss_mb, 1),
        "rss_per_waiter_kb": round(1024 * (holding.rss_mb - before.rss_mb) / n, 1),
        "threads_added": holding.threads - before.threads,
        "idle_cpu_ms": round(1000 * (after_idle.cpu_s - holding.cpu_s), 1),
        "idle_cpu_percent": round(100 * (after_idle.cpu_s - holding.cpu_s) / idle, 2),
        "db_backends_before": backends_before,
        "db_backends_parked": backends_parked,
        "plain_get_p50_ms_before": round(statistics.median(before_ms), 1),
        "plain_get_p50_ms_parked": round(statistics.median(meanwhile_ms), 1),
    }


def _parked(server: WebOnly) -> int:
    return sum(group_members(server.channels_prefix, "action.*").values())


async def _plain_gets(client: httpx.AsyncClient, pending: Pending) -> list[float]:
    headers = {"Authorization": f"Bearer {pending.key}"}
    timings = []
    for _ in range(PROBES):
        started = time.perf_counter()
        answer = await client.get(f"/api/v1/actions/{pending.action_id}/", headers=headers)
        timings.append(1000 * (time.perf_counter() - started))
        assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    return timings


def _backends() -> int:
    """Server processes of PostgreSQL connected to the bench database, this one's excepted."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        return conn.execute(query).fetchone()[0]


def _report(r: dict[str, Any]) -> None:
    print(
        f"\n{r['waiters']:,} parked GET ?wait=60 on {r['workers']} uvicorn workers, in two waves"
        f" (open-files limit {r['open_files_limit']:,}; load average {r['load_average'][0]:.2f})"
    )
    burst = r["burst"]
    print(
        f"the same {r['waiters']:,} GETs without a wait, all at once, first: RSS {burst['before']['rss_mb']:.1f}"
        f" -> {burst['after']['rss_mb']:.1f} MB (+{burst['rss_added_mb']:.1f} MB: the burst's own high-water mark)"
    )
    print(f"{'':<34} {'before':>8} {'parked':>8} {'added':>8}")
    for name in ("first", "second"):
        w = r[name]
        before, parked = w["before"], w["parked"]
        backends = w["db_backends_parked"] - w["db_backends_before"]
        print(f"{name} wave (parked in {w['park_s']:.1f} s)")
        rss = f"{before['rss_mb']:>8.1f} {parked['rss_mb']:>8.1f} {w['rss_added_mb']:>8.1f}"
        print(f"  {'RSS, MB (all workers)':<32} {rss}")
        print(f"  {'OS threads':<32} {before['threads']:>8} {parked['threads']:>8} {w['threads_added']:>8}")
        print(f"  {'PostgreSQL backends':<32} {w['db_backends_before']:>8} {w['db_backends_parked']:>8} {backends:>8}")
        print(
            f"  per waiter: {w['rss_per_waiter_kb']:.1f} KB of RSS, {w['threads_added'] / r['waiters']:.3f} threads;"
            f" CPU over {r['idle_s']:.0f} s idle: {w['idle_cpu_ms']:.0f} ms ({w['idle_cpu_percent']:.2f} % of a core)"
        )
        print(
            f"  a plain GET of an action, p50: {w['plain_get_p50_ms_before']:.1f} ms before,"
            f" {w['plain_get_p50_ms_parked']:.1f} ms with them parked;"
            f" answered before the end (should be 0): {w['answered_before_the_end']}"
        )


if __name__ == "__main__":
    main()
