"""Fan-out at scale: one proposal -> a thousand leads' queue sockets.

    .venv/bin/python bench/fanout_bench.py [--leads 1000] [--proposals 30] [--gap 1.0]
                                           [--redis-url redis://127.0.0.1:6379/15] [--json PATH]

The real stack of bench/queue_live.py (uvicorn config.asgi:application with
2 workers, a Celery worker, PostgreSQL, Redis; production variables), one
department led by `--leads` leads, each holding the real /ws/queue/ socket
with a session of their own (sessions are written straight to the database:
a thousand password logins would cost seven minutes of CPU). An agent
proposes through POST /api/v1/actions/, one at a time, `--gap` seconds
apart. Printed:

- from sending the POST to the frame with the action's row on each socket:
  p50 / p95 / max over every (proposal, lead) pair, and of the first and the
  slowest lead of each proposal;
- the CPU time the two uvicorn workers spent per proposal (all their sockets'
  work; the load elsewhere on the machine inflates it far less than wall time);
- the size of the department's channel-layer group with the sockets open,
  and after all of them close at once (how long until it is back to nothing).

Runs on a database of its own (countersign_fanoutbench; DATABASE_URL
overrides it) and prints numbers; asserts nothing. Results: docs/queue.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

from _setup import django_on_postgres, write_json
from queue_live import REDIS_URL, Stack, _forget_redis_keys, _free_port, _percentile, _stack_env

DATABASE = "countersign_fanoutbench"
ROW_START = '<tr id="action-'
CONNECTS_IN_FLIGHT = 25
FRAME_TIMEOUT = 20.0  # after the last proposal, how long a missing row may still come
GROUP_TIMEOUT = 10.0  # after the mass disconnect, how long the group may take to empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--proposals", type=int, default=30)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between proposals")
    parser.add_argument("--redis-url", default=REDIS_URL, help="the Redis database the stack uses")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # The sessions written here must be read by the stack: one secret for both.
    os.environ["SECRET_KEY"] = secret = secrets.token_urlsafe(64)
    django_on_postgres(DATABASE)
    key, department_id, cookies = _prepare(args.leads)
    port, tag = _free_port(), secrets.token_hex(4)
    env = {**_stack_env(port, tag, None, args.redis_url), "SECRET_KEY": secret}
    group_key = f"{env['CHANNELS_PREFIX']}:group:department.{department_id}"
    try:
        with Stack(port, env) as stack:
            print(f"stack up: uvicorn (2 workers) on 127.0.0.1:{port}")
            run = asyncio.run(_drive(stack, key, cookies, args, GroupProbe(args.redis_url, group_key)))
    finally:
        _forget_redis_keys(tag, args.redis_url)
    summary = _summary(run, args)
    _report(summary)
    write_json(args.json, summary)


# ---------------------------------------------------------------- data


def _prepare(leads: int) -> tuple[str, int, list[str]]:
    """The department with `leads` leads (one session each), an empty queue,
    a fresh agent key. Returns the raw key, the department and the cookies."""
    import queue_seed
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from agents.services import issue_key
    from audit.log import Actor

    users = get_user_model()
    names = [f"fanout-lead-{i}" for i in range(leads)]
    existing = set(users.objects.filter(username__in=names).values_list("username", flat=True))
    users.objects.bulk_create(users(username=name, password="!") for name in names if name not in existing)
    fleet = dataclasses.replace(queue_seed.fleet(0), leads=list(users.objects.filter(username__in=names)))
    fleet.department.leads.add(*fleet.leads)
    queue_seed.fill_queue(fleet, pending=0, shadowed=0, vetoable=0, history=0)
    cookies = []
    for lead in fleet.leads:
        client = Client()
        client.force_login(lead)
        cookies.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    key = issue_key(fleet.agents[0], actor=Actor.system("fanout-bench"), label="fanout bench")[1]
    return key, fleet.department.pk, cookies


class GroupProbe:
    """The size of the department's group in the channel layer (a Redis sorted set)."""

    def __init__(self, redis_url: str, key: str) -> None:
        import redis

        self.client, self.key = redis.Redis.from_url(redis_url), key

    def size(self) -> int:
        return int(self.client.zcard(self.key))


# ---------------------------------------------------------------- the run


@dataclasses.dataclass
class Run:
    leads: int
    sent: dict[str, float] = dataclasses.field(default_factory=dict)  # action id -> POST sent
    post_ms: list[float] = dataclasses.field(default_factory=list)
    arrivals: list[dict[str, float]] = dataclasses.field(default_factory=list)  # per lead: action id -> frame
    cpu_ms: float = 0.0  # the uvicorn workers' CPU time over the proposals
    group_open: int = 0
    group_after_close: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (s after, size)
    load: tuple[float, ...] = ()


async def _drive(stack: Stack, key: str, cookies: list[str], args: argparse.Namespace, group: GroupProbe) -> Run:
    run = Run(leads=len(cookies), arrivals=[{} for _ in cookies])
    started = time.perf_counter()
    sockets = await _open_all(stack.url, cookies)
    print(f"{len(sockets)} lead sockets open in {time.perf_counter() - started:.1f} s")
    run.group_open = group.size()
    listeners = [asyncio.create_task(_listen(ws, run.arrivals[i])) for i, ws in enumerate(sockets)]
    workers = _worker_pids(stack.processes["uvicorn"].pid)
    try:
        cpu_before = _cpu_seconds(workers)
        await _propose_all(stack.url, key, args, run)
        await _wait_for_rows(run)
        run.cpu_ms = 1000 * (_cpu_seconds(workers) - cpu_before)
        run.load = os.getloadavg()
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        closed = time.perf_counter()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    run.group_after_close = await _watch_group(group, closed)
    return run


async def _open_all(base_url: str, cookies: list[str]) -> list[Any]:
    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    url = base_url.replace("http", "ws") + "/ws/queue/"

    async def open_one(cookie: str) -> Any:
        async with gate:
            ws = await connect(
                url, origin=base_url, additional_headers={"Cookie": f"sessionid={cookie}"}, open_timeout=30,
                max_size=None, ping_interval=None,
            )  # fmt: skip
            hello = await asyncio.wait_for(ws.recv(), 30)
            assert '"hello"' in hello, hello
            return ws

    return list(await asyncio.gather(*(open_one(cookie) for cookie in cookies)))


async def _listen(ws: Any, arrivals: dict[str, float]) -> None:
    """Note when each action's row first reaches this lead."""
    async for frame in ws:
        now = time.perf_counter()
        at = frame.find(ROW_START)
        if at >= 0:
            arrivals.setdefault(frame[at + len(ROW_START) : at + len(ROW_START) + 36], now)


async def _propose_all(base_url: str, key: str, args: argparse.Namespace, run: Run) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        for n in range(args.proposals):
            body = {
                "action_type": "queuebench.medium",
                "payload": {"to": [f"customer-{n}@example.com"], "subject": f"Order {n}", "body": "Refunded."},
                "reasoning": "The customer was charged twice; the second capture has no shipment.",
                "confidence": 0.93,
            }
            sent = time.perf_counter()
            answer = await client.post("/api/v1/actions/", json=body)
            run.post_ms.append(1000 * (time.perf_counter() - sent))
            assert answer.status_code == 201, (answer.status_code, answer.text[:300])
            run.sent[answer.json()["id"]] = sent
            await asyncio.sleep(args.gap)


async def _wait_for_rows(run: Run) -> None:
    deadline = time.monotonic() + FRAME_TIMEOUT
    while time.monotonic() < deadline and any(len(arrived) < len(run.sent) for arrived in run.arrivals):
        await asyncio.sleep(0.2)


async def _watch_group(group: GroupProbe, closed: float) -> list[tuple[float, int]]:
    """The group's size after the mass disconnect: right away, then until it is empty or GROUP_TIMEOUT."""
    sizes = [(time.perf_counter() - closed, group.size())]
    while sizes[-1][1] and sizes[-1][0] < GROUP_TIMEOUT:
        await asyncio.sleep(0.5)
        sizes.append((time.perf_counter() - closed, group.size()))
    return sizes


# ---------------------------------------------------------------- CPU of the server


def _worker_pids(master: int) -> list[int]:
    """uvicorn's worker processes: the children of its master."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (and their threads), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


# ---------------------------------------------------------------- the numbers


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    return {
        "n": len(values),
        "p50_ms": statistics.median(values),
        "p95_ms": _percentile(values, 0.95),
        "max_ms": max(values),
    }


def _summary(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    pairs, first, slowest, missing = [], [], [], 0
    for action_id, sent in run.sent.items():
        per_lead = [arrived[action_id] for arrived in run.arrivals if action_id in arrived]
        missing += run.leads - len(per_lead)
        pairs += [1000 * (at - sent) for at in per_lead]
        if per_lead:
            first.append(1000 * (min(per_lead) - sent))
            slowest.append(1000 * (max(per_lead) - sent))
    return {
        "leads": run.leads,
        "proposals": len(run.sent),
        "gap_s": args.gap,
        "missing": missing,
        "post": _stats(run.post_ms),
        "first_lead": _stats(first),
        "all_pairs": _stats(pairs),
        "slowest_lead": _stats(slowest),
        "server_cpu_ms_per_proposal": run.cpu_ms / max(1, len(run.sent)),
        "group_size_open": run.group_open,
        "group_size_after_close": [{"s": round(s, 2), "size": size} for s, size in run.group_after_close],
        "load_average": run.load,
    }


SERIES = {
    "post": "POST answered (201)",
    "first_lead": "row on the first lead's socket",
    "all_pairs": "row on a socket, all pairs",
    "slowest_lead": "row on the slowest lead's socket",
}


def _report(summary: dict[str, Any]) -> None:
    print(
        f"\nPOST /api/v1/actions/ -> row on each lead's socket; {summary['proposals']} proposals,"
        f" {summary['gap_s'] * 1000:.0f} ms apart, {summary['leads']:,} leads connected (2 uvicorn workers)"
    )
    print(f"{'':<36} {'n':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for key, label in SERIES.items():
        series = summary[key]
        if series["n"]:
            print(f"{label:<36} {series['n']:>7} {series['p50_ms']:>8.1f} {series['p95_ms']:>8.1f}", end="")
            print(f" {series['max_ms']:>8.1f}")
    if summary["missing"]:
        print(f"missing: {summary['missing']} (proposal, lead) rows never arrived within {FRAME_TIMEOUT:.0f} s")
    print(f"server CPU per proposal (both uvicorn workers): {summary['server_cpu_ms_per_proposal']:.1f} ms")
    after = ", ".join(f"{entry['size']} at {entry['s']:.1f} s" for entry in summary["group_size_after_close"])
    print(f"department group in the channel layer: {summary['group_size_open']} members with the sockets open;")
    print(f"  after all {summary['leads']:,} closed at once: {after}")
    print(f"load average at the end: {' '.join(f'{load:.2f}' for load in summary['load_average'])}")


if __name__ == "__main__":
    main()
