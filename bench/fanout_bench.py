"""Fan-out at scale: one proposal -> a thousand leads' queue sockets.

    .venv/bin/python bench/fanout_bench.py [--leads 1000] [--proposals 30] [--gap 1.0] [--warmup 3]
                                           [--redis-url redis://127.0.0.1:6379/15] [--json PATH]

The real stack of bench/queue_live.py (uvicorn config.asgi:application with
2 workers, a Celery worker, PostgreSQL, Redis; production variables), one
department led by `--leads` leads, each holding the real /ws/queue/ socket
with a session of their own (sessions are written straight to the database:
a thousand password logins would cost seven minutes of CPU). An agent
proposes through POST /api/v1/actions/, one at a time, `--gap` seconds
apart, after `--warmup` untimed ones. Printed:

- from sending the POST to the frame with the action's row on each socket:
  p50 / p95 / max over every (proposal, lead) pair, and of the first and the
  slowest lead of each proposal; and over every pair from the publish (the
  moment this bench, a member of the department's group too, hears the
  change: what the fan-out itself takes, without the intake);
- the CPU time the two uvicorn workers spent per proposal (all their sockets'
  work; the load elsewhere on the machine inflates it far less than wall
  time), and this bench's own (it shares the machine's two cores);
- the size of the department's channel-layer group with the sockets open
  (before the bench joins it), and after all of them close at once (how long
  until it is back to nothing).

Runs on a database of its own (countersign_fanoutbench; DATABASE_URL
overrides it) and prints numbers; asserts nothing. Results: docs/queue.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _setup import django_on_postgres, write_json
from queue_live import REDIS_URL, Stack, _forget_redis_keys, _free_port, _stack_env, _stats
from websockets.exceptions import ConnectionClosed

DATABASE = "countersign_fanoutbench"
ROW_START = b'<tr id="action-'
CONNECTS_IN_FLIGHT = 25
FRAME_TIMEOUT = 20.0  # after the last proposal, how long a missing row may still come
GROUP_TIMEOUT = 10.0  # after the mass disconnect, how long the group may take to empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--proposals", type=int, default=30)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between proposals")
    parser.add_argument("--warmup", type=int, default=3, help="proposals first, not timed (a cold server's first)")
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
    prefix, group = env["CHANNELS_PREFIX"], f"department.{department_id}"
    try:
        with Stack(port, env) as stack:
            print(f"stack up: uvicorn (2 workers) on 127.0.0.1:{port}")
            probe = GroupProbe(args.redis_url, prefix, group)
            run = asyncio.run(_drive(stack, key, cookies, args, probe))
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
    """The department's group in the stack's channel layer: its size (a Redis
    sorted set), and, while listening, when each change was published: this
    process joins the group too and notes each message's arrival (one Redis
    round trip after the server's group_send)."""

    def __init__(self, redis_url: str, prefix: str, group: str) -> None:
        import redis
        from channels_redis.core import RedisChannelLayer

        self.client, self.key = redis.Redis.from_url(redis_url), f"{prefix}:group:{group}"
        self.layer, self.group = RedisChannelLayer(hosts=[redis_url], prefix=prefix), group
        self.published: dict[str, float] = {}  # action id -> when its message arrived here

    def size(self) -> int:
        return int(self.client.zcard(self.key))

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, channel)
        task = asyncio.create_task(self._listen(channel))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.layer.group_discard(self.group, channel)
            await self.layer.close_pools()

    async def _listen(self, channel: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            self.published.setdefault(message["action_id"], time.perf_counter())


# ---------------------------------------------------------------- the run


@dataclasses.dataclass
class Run:
    leads: int
    sent: dict[str, float] = dataclasses.field(default_factory=dict)  # action id -> POST sent
    published: dict[str, float] = dataclasses.field(default_factory=dict)  # action id -> its message heard
    post_ms: list[float] = dataclasses.field(default_factory=list)
    arrivals: list[dict[str, float]] = dataclasses.field(default_factory=list)  # per lead: action id -> frame
    cpu_ms: float = 0.0  # the uvicorn workers' CPU time over the proposals
    client_cpu_ms: float = 0.0  # this process's: the leads' sockets and the agent
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
        async with group.listening():
            await _propose(stack.url, key, range(-args.warmup, 0), args.gap, None)
            cpu_before, client_before = _cpu_seconds(workers), time.process_time()
            await _propose(stack.url, key, range(args.proposals), args.gap, run)
            await _wait_for_rows(run)
            run.cpu_ms = 1000 * (_cpu_seconds(workers) - cpu_before)
            run.client_cpu_ms = 1000 * (time.process_time() - client_before)
            run.load = os.getloadavg()
            run.published = dict(group.published)
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
    """Note when each action's row first reaches this lead. The frames stay
    bytes: this process reads a thousand of them per change on the cores the
    server uses too, and decoding each to text would only cost it time."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            frame = await ws.recv(decode=False)
            now = time.perf_counter()
            at = frame.find(ROW_START)
            if at >= 0:
                arrivals.setdefault(frame[at + len(ROW_START) : at + len(ROW_START) + 36].decode(), now)


async def _propose(base_url: str, key: str, numbers: range, gap: float, run: Run | None) -> None:
    """One proposal per number, `gap` seconds apart; timed into `run` unless it is None."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        for n in numbers:
            body = {
                "action_type": "queuebench.medium",
                "payload": {"to": [f"customer-{n}@example.com"], "subject": f"Order {n}", "body": "Refunded."},
                "reasoning": "The customer was charged twice; the second capture has no shipment.",
                "confidence": 0.93,
            }
            sent = time.perf_counter()
            answer = await client.post("/api/v1/actions/", json=body)
            assert answer.status_code == 201, (answer.status_code, answer.text[:300])
            if run is not None:
                run.post_ms.append(1000 * (time.perf_counter() - sent))
                run.sent[answer.json()["id"]] = sent
            await asyncio.sleep(gap)


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


def _summary(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    pairs, from_publish, first, slowest, missing = [], [], [], [], 0
    for action_id, sent in run.sent.items():
        per_lead = [arrived[action_id] for arrived in run.arrivals if action_id in arrived]
        missing += run.leads - len(per_lead)
        pairs += [1000 * (at - sent) for at in per_lead]
        if action_id in run.published:
            from_publish += [1000 * (at - run.published[action_id]) for at in per_lead]
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
        "from_publish": _stats(from_publish),
        "slowest_lead": _stats(slowest),
        "server_cpu_ms_per_proposal": run.cpu_ms / max(1, len(run.sent)),
        "client_cpu_ms_per_proposal": run.client_cpu_ms / max(1, len(run.sent)),
        "group_size_open": run.group_open,
        "group_size_after_close": [{"s": round(s, 2), "size": size} for s, size in run.group_after_close],
        "load_average": run.load,
    }


SERIES = {
    "post": "POST answered (201)",
    "first_lead": "row on the first lead's socket",
    "all_pairs": "row on a socket, all pairs",
    "from_publish": "the same, from the publish",
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
    print(
        f"CPU per proposal: {summary['server_cpu_ms_per_proposal']:.1f} ms in the two uvicorn workers,"
        f" {summary['client_cpu_ms_per_proposal']:.1f} ms in this bench (the leads' sockets, the agent)"
    )
    after = ", ".join(f"{entry['size']} at {entry['s']:.1f} s" for entry in summary["group_size_after_close"])
    print(f"department group in the channel layer: {summary['group_size_open']} members with the sockets open;")
    print(f"  after all {summary['leads']:,} closed at once: {after}")
    print(f"load average at the end: {' '.join(f'{load:.2f}' for load in summary['load_average'])}")


if __name__ == "__main__":
    main()
