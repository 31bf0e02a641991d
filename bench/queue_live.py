"""POST -> row on every lead's screen, on the real stack (queue_bench.py live).

1. The stack, as subprocesses in their own process groups: uvicorn
   config.asgi:application with 2 workers and a Celery worker (concurrency 2)
   on a queue of its own, production variables (DEBUG off, random
   SECRET_KEY, background audit sealing), PostgreSQL (the bench database)
   and Redis (database 15, a channel-layer prefix of its own). Loopback only.
2. 50 leads log in through POST /login/ and open the real /ws/queue/ socket
   with their session cookie and an allowed Origin, as the page's htmx does.
   With --browser one more lead is a headless Chromium page on /queue/.
3. An agent proposes through POST /api/v1/actions/, one at a time with a
   small gap. For each proposal we time, from the moment the POST is sent,
   the frame carrying its row (<tr id="action-...">) on every socket, and
   with --browser the row's insertion into the page's DOM.

The subprocesses are stopped at the end, on errors and on Ctrl-C; their
logs are kept when something failed. Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _setup import ROOT, django_on_postgres, write_json

REDIS_URL = "redis://127.0.0.1:6379/15"
ROW = re.compile(r'<tr id="action-([0-9a-f-]{36})" class="row')
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
START_TIMEOUT = 60.0
FRAME_TIMEOUT = 15.0  # after the last proposal, how long a missing row may still come
# Logins at once: each hashes a password (PBKDF2, ~0.4 s of CPU) holding a pooled
# connection; 50 at once on a busy 2-core machine outwait the pool's 30 s time-out.
LOGINS_IN_FLIGHT = 4


def run(args: argparse.Namespace, database: str) -> None:
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django_on_postgres(database)
    key, port = _prepare(args), _free_port()
    tag = secrets.token_hex(4)
    env = _stack_env(port, tag, args.db_pool)
    try:
        with Stack(port, env) as stack:
            print(f"stack up: uvicorn (2 workers) on 127.0.0.1:{port}, celery worker on queue queuebench-{tag}")
            result = asyncio.run(_drive(stack, key, args))
    finally:
        _forget_redis_keys(tag, REDIS_URL)  # once the worker is gone: it re-declares its queue until it stops
    latencies, missing = _latencies(result)
    _report(latencies, missing, args)
    write_json(args.json, _summary(latencies, missing, args))


# ---------------------------------------------------------------- data


def _prepare(args: argparse.Namespace) -> str:
    """The department with its leads (passwords set), an empty queue or
    `--pending` waiting rows, and a fresh agent key; returns the raw key."""
    import queue_seed

    from agents.services import issue_key
    from audit.log import Actor

    fleet = queue_seed.fleet(args.leads + (1 if args.browser else 0))
    queue_seed.fill_queue(fleet, pending=args.pending, shadowed=0, vetoable=0, history=0)
    return issue_key(fleet.agents[0], actor=Actor.system("queue-bench"), label="queue bench")[1]


def _stack_env(port: int, tag: str, db_pool: int | None, redis_url: str = REDIS_URL) -> dict[str, str]:
    """Production variables; nothing inherited but the basics of a shell.
    Redis keys, queues and channels carry `queuebench-<tag>`."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SITE_URL=f"http://127.0.0.1:{port}",
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=f"queuebench-{tag}",
        CACHE_PREFIX=f"queuebench-{tag}",
        CELERY_QUEUE=f"queuebench-{tag}",
        CELERY_TASK_ALWAYS_EAGER="0",
        AUDIT_SEALING="background",
        LOG_LEVEL="WARNING",
    )
    if db_pool is not None:
        env["DB_POOL_SIZE"] = str(db_pool)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _forget_redis_keys(tag: str, redis_url: str) -> None:
    """Drop what this run left in Redis: its Celery queue, channel-layer and cache keys."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = [*client.scan_iter(f"queuebench-{tag}*"), *client.scan_iter(f"*queuebench-{tag}*")]
    if keys:
        client.delete(*set(keys))
    client.close()


# ---------------------------------------------------------------- the stack


class Stack:
    """uvicorn and a Celery worker, each in its own process group, stopped
    on exit whatever happens (errors, Ctrl-C, SIGTERM)."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.port, self.env = port, env
        self.url = f"http://127.0.0.1:{port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def __enter__(self) -> Stack:
        atexit.register(self.stop)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through __exit__
        bin_dir = Path(sys.executable).parent
        try:
            self._start_web(workers=2)
            self._start("celery", [str(bin_dir / "celery"), "-A", "config", "worker", "--concurrency", "2",
                                   "-Q", self.env["CELERY_QUEUE"], "--loglevel", "WARNING"])  # fmt: skip
            self._wait_until_ready()
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.stop(keep_logs=exc_type is not None)

    def _start_web(self, workers: int) -> None:
        """uvicorn as the Procfile's web process runs it (frames uncompressed, docs/queue.md,
        "Fan-out at scale"), with a short graceful shutdown: the channel layer's tasks would
        otherwise hold the stop up."""
        uvicorn = str(Path(sys.executable).parent / "uvicorn")
        self._start("uvicorn", [uvicorn, "config.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
                                "--workers", str(workers), "--proxy-headers", "--ws-per-message-deflate", "false",
                                "--timeout-graceful-shutdown", "3"])  # fmt: skip

    def _start(self, name: str, command: list[str]) -> None:
        log = tempfile.NamedTemporaryFile(prefix=f"queue_bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.logs[name] = Path(log.name)
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()  # the child writes to its own copy

    def _wait_until_ready(self) -> None:
        """uvicorn answers, and the worker has said it is ready."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            if self._answers() and self._worker_ready():
                time.sleep(1.0)  # the second uvicorn worker boots alongside the first
                return
            time.sleep(0.3)
        raise RuntimeError(f"The stack did not come up within {START_TIMEOUT:.0f} s.")

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/login/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _worker_ready(self) -> bool:
        """The worker answers a broadcast ping (a throwaway client app: this
        process's own settings have no broker)."""
        from celery import Celery

        client = Celery(broker=self.env["REDIS_URL"])
        try:
            return bool(client.control.ping(timeout=1.0))
        finally:
            client.close()

    def stop(self, keep_logs: bool = False) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        for name, path in self.logs.items():
            if keep_logs:
                print(f"{name}'s log is kept: {path}", file=sys.stderr)
            else:
                path.unlink(missing_ok=True)
        self.logs = {}  # handled: the atexit call finds nothing left to do

    def log_tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- the run


@dataclass
class Result:
    leads: int
    sent: dict[str, float] = field(default_factory=dict)  # action id -> when its POST was sent
    post_ms: list[float] = field(default_factory=list)  # POST round trips
    arrivals: list[dict[str, float]] = field(default_factory=list)  # per lead: action id -> frame time
    browser: dict[str, float] = field(default_factory=dict)  # action id -> row in the DOM (epoch ms)
    sent_epoch: dict[str, float] = field(default_factory=dict)  # action id -> POST sent (epoch ms)


async def _drive(stack: Stack, key: str, args: argparse.Namespace) -> Result:
    import websockets

    result = Result(leads=args.leads, arrivals=[{} for _ in range(args.leads)])
    logins = asyncio.Semaphore(LOGINS_IN_FLIGHT)
    cookies = await asyncio.gather(*(_log_in(stack.url, f"queue-lead-{i}", logins) for i in range(args.leads)))
    origin = stack.url
    sockets = []
    for session in cookies:
        ws = await websockets.connect(
            stack.url.replace("http", "ws") + "/ws/queue/",
            origin=origin,
            additional_headers={"Cookie": f"sessionid={session}"},
            open_timeout=10,
            max_size=None,
        )
        hello = await asyncio.wait_for(ws.recv(), 10)
        assert '"hello"' in hello, hello
        sockets.append(ws)
    print(f"{len(sockets)} lead sockets open")
    listeners = [asyncio.create_task(_listen(ws, result.arrivals[i])) for i, ws in enumerate(sockets)]
    browser = await _open_browser(stack.url, f"queue-lead-{args.leads}") if args.browser else None
    try:
        await _propose_all(stack.url, key, args, result)
        await _wait_for_rows(result, browser)
        if browser is not None:
            result.browser = await browser.arrivals()
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        for ws in sockets:
            await ws.close()
        if browser is not None:
            await browser.close()
    return result


async def _log_in(base_url: str, username: str, logins: asyncio.Semaphore) -> str:
    """A real login: the form's CSRF cookie, then POST /login/; the session id."""
    import queue_seed

    async with logins, httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await client.get("/login/")
        token = client.cookies["csrftoken"]
        form = {"username": username, "password": queue_seed.PASSWORD, "csrfmiddlewaretoken": token}
        answer = await client.post("/login/", data=form)
        assert answer.status_code == 302, (username, answer.status_code, answer.text[:300])
        return client.cookies["sessionid"]


async def _listen(ws: Any, arrivals: dict[str, float]) -> None:
    """Note when each action's row first reaches this lead."""
    async for frame in ws:
        now = time.perf_counter()
        for action_id in ROW.findall(frame):
            arrivals.setdefault(action_id, now)


async def _propose_all(base_url: str, key: str, args: argparse.Namespace, result: Result) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        for n in range(args.proposals):
            body = {
                "action_type": "queuebench.medium",
                "payload": {"order_id": f"ORD-{n:08d}", "amount": "120.00", "currency": "EUR"},
                "reasoning": "The customer was charged twice; the second capture has no shipment.",
                "confidence": 0.93,
                "amount": "120.00",
            }
            sent, sent_epoch = time.perf_counter(), time.time() * 1000
            answer = await client.post("/api/v1/actions/", json=body)
            result.post_ms.append(1000 * (time.perf_counter() - sent))
            assert answer.status_code == 201, (answer.status_code, answer.text[:300])
            action_id = answer.json()["id"]
            result.sent[action_id], result.sent_epoch[action_id] = sent, sent_epoch
            await asyncio.sleep(args.gap)


async def _wait_for_rows(result: Result, browser: BrowserLead | None) -> None:
    """Until every row reached every lead (and the page), or FRAME_TIMEOUT."""
    deadline = time.monotonic() + FRAME_TIMEOUT
    while time.monotonic() < deadline:
        sockets_done = all(len(arrived) >= len(result.sent) for arrived in result.arrivals)
        page_done = browser is None or len(await browser.arrivals()) >= len(result.sent)
        if sockets_done and page_done:
            return
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- the browser lead


class BrowserLead:
    """A headless Chromium page on /queue/, logged in through the form; a
    MutationObserver notes (epoch ms) when each row enters the pending table."""

    # On #queue-live, which outlives the lane's re-sync swaps (the first one
    # comes right after the socket opens and replaces #pending-rows).
    OBSERVE = """() => {
        window.__arrivals = {};
        new MutationObserver((records) => {
            const now = Date.now();
            for (const record of records) for (const node of record.addedNodes)
                if (node.id && node.id.startsWith("action-") && !(node.id.slice(7) in window.__arrivals))
                    window.__arrivals[node.id.slice(7)] = now;
        }).observe(document.getElementById("queue-live"), {childList: true, subtree: true});
    }"""

    def __init__(self, playwright: Any, browser: Any, page: Any) -> None:
        self.playwright, self.browser, self.page = playwright, browser, page

    async def arrivals(self) -> dict[str, float]:
        return await self.page.evaluate("() => window.__arrivals")

    async def close(self) -> None:
        await self.browser.close()
        await self.playwright.stop()


async def _open_browser(base_url: str, username: str) -> BrowserLead:
    import queue_seed
    from playwright.async_api import async_playwright

    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = await browser.new_page(base_url=base_url)
    greeted = asyncio.Event()
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: '"hello"' in str(f) and greeted.set()))
    await page.goto("/login/?next=/queue/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(queue_seed.PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/queue/")
    await asyncio.wait_for(greeted.wait(), 10)
    await page.wait_for_load_state("networkidle")  # the re-sync after the socket opened
    await page.evaluate(BrowserLead.OBSERVE)
    return BrowserLead(playwright, browser, page)


# ---------------------------------------------------------------- the table


# What each series times (its key in the JSON -> its label in the table).
SERIES = {
    "post": "POST answered (201)",
    "first_lead": "row on the first lead's socket",
    "all_pairs": "row on a lead's socket, all (proposal, lead)",
    "slowest_lead": "row on the slowest lead's socket",
    "browser_dom": "row in the Chromium page's DOM",
}


def _latencies(result: Result) -> tuple[dict[str, list[float]], int]:
    """Milliseconds from each POST, by series; and how many (proposal, lead)
    rows never arrived."""
    pairs, fastest, slowest, missing = [], [], [], 0
    for action_id, sent in result.sent.items():
        per_lead = [arrived[action_id] for arrived in result.arrivals if action_id in arrived]
        missing += result.leads - len(per_lead)
        pairs += [1000 * (at - sent) for at in per_lead]
        if per_lead:
            fastest.append(1000 * (min(per_lead) - sent))
            slowest.append(1000 * (max(per_lead) - sent))
    latencies = {"post": result.post_ms, "first_lead": fastest, "all_pairs": pairs, "slowest_lead": slowest}
    if result.browser:
        latencies["browser_dom"] = [
            result.browser[a] - result.sent_epoch[a] for a in result.sent if a in result.browser
        ]
    return latencies, missing


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _row(label: str, values: list[float]) -> str:
    median = statistics.median(values) if values else float("nan")
    return (
        f"{label:<44} {len(values):>7} {median:>8.1f} {_percentile(values, 0.95):>8.1f}"
        f" {max(values, default=float('nan')):>8.1f}"
    )


def _report(latencies: dict[str, list[float]], missing: int, args: argparse.Namespace) -> None:
    print(
        f"\nPOST /api/v1/actions/ -> row on the lead's socket; {len(latencies['post'])} proposals,"
        f" {args.gap * 1000:.0f} ms apart, {args.leads} leads connected, {args.pending:,} rows already pending,"
        f" DB_POOL_SIZE={'as shipped' if args.db_pool is None else args.db_pool}"
    )
    print(f"{'':<44} {'n':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for key, values in latencies.items():
        print(_row(SERIES[key], values))
    if missing:
        print(f"missing: {missing} (proposal, lead) rows never arrived within {FRAME_TIMEOUT:.0f} s")


def _summary(latencies: dict[str, list[float]], missing: int, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "leads": args.leads,
        "gap_s": args.gap,
        "pending": args.pending,
        "missing": missing,
        **{key: _stats(values) for key, values in latencies.items()},
    }


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    return {
        "n": len(values),
        "p50_ms": statistics.median(values),
        "p95_ms": _percentile(values, 0.95),
        "max_ms": max(values),
    }
