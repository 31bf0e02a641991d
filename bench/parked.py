"""Shared by waiters_bench.py and disconnect_bench.py: the web process as the
Procfile runs it, many parked long polls and lead sockets against it, and
what /proc and Redis say meanwhile.

- `WebOnly`: `uvicorn config.asgi:application --workers N` with production
  variables (queue_live.Stack without its Celery worker: nothing here needs one).
- `Waiter`: one `GET /api/v1/actions/<id>/?wait=60` on a raw socket, which
  can hang up without a goodbye (an abort, as a killed agent does).
- `Usage`: RSS, threads and CPU seconds of the server's worker processes.
- `group_members`: the channel layer's group memberships (ZCARD of its group keys).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queue_live import START_TIMEOUT, Stack, _free_port, _stack_env

REDIS_URL = "redis://127.0.0.1:6379/7"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
OPEN_FILES = 65_536  # a thousand and more sockets on each side, and Redis connections


def raise_open_files_limit() -> int:
    """Up to the hard limit: the servers started from here inherit it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- the server


def production_env(port: int, tag: str, workers: int) -> dict[str, str]:
    """What the Procfile's web process would get (queue_live's production variables),
    with the rate limit out of the way: the bench measures parking, not the rate limit."""
    env = _stack_env(port, f"park-{tag}", None, REDIS_URL)
    env.update(AGENT_RATE_LIMIT="1000000/min", WEB_CONCURRENCY=str(workers))
    return env


class WebOnly(Stack):
    """uvicorn alone, with the Procfile's arguments (--workers, --proxy-headers)."""

    def __init__(self, workers: int) -> None:
        port = _free_port()
        self.tag = secrets.token_hex(4)
        self.workers = workers
        super().__init__(port, production_env(port, self.tag, workers))

    @property
    def channels_prefix(self) -> str:
        return self.env["CHANNELS_PREFIX"]

    def __enter__(self) -> WebOnly:
        atexit.register(self.stop)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through __exit__
        try:
            self._start_web(self.workers)
            deadline = time.monotonic() + START_TIMEOUT
            while len(self.worker_pids()) < self.workers or not self._answers():
                if self.processes["uvicorn"].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not come up:\n{self.log_tail('uvicorn')}")
                time.sleep(0.3)
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def worker_pids(self) -> list[int]:
        """The processes that serve: uvicorn's children (its supervisor only watches them)."""
        supervisor = self.processes["uvicorn"].pid
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def usage(self) -> Usage:
        return Usage.of(self.worker_pids())


@dataclass(frozen=True)
class Usage:
    """What the server's worker processes hold: resident memory, OS threads, CPU seconds so far."""

    rss_mb: float
    threads: int
    cpu_s: float

    @classmethod
    def of(cls, pids: list[int]) -> Usage:
        rss_kb = threads = ticks = 0
        for pid in pids:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
            )
            rss_kb += int(status["VmRSS"].split()[0])
            threads += int(status["Threads"])
            # utime and stime: fields 14 and 15 of /proc/PID/stat, after the ")" that ends the name.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return cls(rss_kb / 1024, threads, ticks / CLK_TCK)

    def as_dict(self) -> dict[str, Any]:
        return {"rss_mb": round(self.rss_mb, 1), "threads": self.threads, "cpu_s": round(self.cpu_s, 3)}


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Pending:
    """A pending action and the raw key of its agent, who may wait on it."""

    action_id: str
    key: str


def seed(n_pending: int, n_leads: int) -> tuple[list[Pending], list[Any]]:
    """queue_seed's department (its leads, passwords set) with `n_pending`
    pending actions of its eight agents, and a fresh key per agent."""
    import queue_seed

    from agents.services import issue_key
    from approvals.models import Action
    from audit.log import Actor

    fleet = queue_seed.fleet(n_leads)
    queue_seed.fill_queue(fleet, pending=n_pending, shadowed=0, vetoable=0, history=0)
    keys = {
        agent.pk: issue_key(agent, actor=Actor.system("parked-bench"), label="parked bench")[1]
        for agent in fleet.agents
    }
    rows = Action.objects.filter(department=fleet.department, status="pending").values_list("pk", "agent_id")
    return [Pending(str(pk), keys[agent_id]) for pk, agent_id in rows[:n_pending]], fleet.leads


# ---------------------------------------------------------------- clients


class Waiter:
    """GET /api/v1/actions/<id>/?wait=N on a socket of its own, the answer read whole."""

    def __init__(self, port: int, pending: Pending, wait: int = 60) -> None:
        self.port, self.pending, self.wait = port, pending, wait
        self.writer: asyncio.StreamWriter | None = None
        self.status: int | None = None

    async def run(self) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"GET /api/v1/actions/{self.pending.action_id}/?wait={self.wait} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {self.pending.key}\r\nConnection: close\r\n\r\n"
        )
        self.writer.write(request.encode())
        await self.writer.drain()
        answer = await reader.read()  # Connection: close - the server ends it
        self.status = int(answer.split(b" ", 2)[1]) if answer else None

    def hang_up(self) -> None:
        """Drop the connection at once (an RST), as a killed client does."""
        if self.writer is not None:
            self.writer.transport.abort()


async def gather_quietly(tasks: list[asyncio.Task[Any]]) -> None:
    """Let hung-up clients' tasks end; their errors are the point, not news."""
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------- the channel layer


def group_members(prefix: str, pattern: str = "*") -> dict[str, int]:
    """ZCARD of each of the channel layer's group keys matching `pattern`
    (channels_redis keeps a group as the sorted set `<prefix>:group:<name>`)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}:group:{pattern}", count=1000))
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcard(key)
            sizes = pipe.execute()
    finally:
        client.close()
    start = len(f"{prefix}:group:")
    return {key.decode()[start:]: size for key, size in zip(keys, sizes, strict=True) if size}


def forget_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"*{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


async def until(probe: Any, timeout: float, every: float = 0.2) -> bool:
    """Poll `probe()` until it is true or `timeout` seconds pass; whether it came true."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True
