"""Agent API intake benchmark: sustained proposals/s and latency of
POST /api/v1/actions/ on the production server, side by side with a bare
Django view that inserts one comparable row (bench/bare.py).

    .venv/bin/python bench/api_bench.py [--workers 2,3,4] [--concurrency 32] [--duration 20] [--rounds 2]
                                        [--policy-calls 100000] [--json PATH]

One uvicorn per worker count, started as the Procfile's `web` process
(`uvicorn config.asgi:application --workers N --proxy-headers`) with
production variables: DEBUG off, HTTPS behind a trusted proxy, PostgreSQL
(a dedicated countersign_apibench database) and Redis (database 12, so Celery
is not eager: routing tasks are only enqueued, as in production; the queue is
purged at the end). Both endpoints are served by the same server from the
same settings module (bench/settings_bare.py); rounds alternate bare, API,
bare, API and the medians are reported. Prints numbers (and with --json
writes them to PATH); asserts nothing.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadgen
import policy_bench
from _setup import ROOT, django_on_postgres, write_json

DATABASE = "countersign_apibench"
REDIS_URL = "redis://127.0.0.1:6379/12"
CELERY_QUEUE = "countersign"  # settings.CELERY_TASK_DEFAULT_QUEUE
API_PATH = "/api/v1/actions/"
BARE_PATH = "/bench/bare/"
TARGET_RATIO = 0.6
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the fleet

REFUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "customer_id", "amount", "currency", "reason"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string", "pattern": "^ORD-[0-9]{8}$"},
        "customer_id": {"type": "string", "pattern": "^cus_[0-9a-z]{8,24}$"},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "reason": {"enum": ["duplicate_charge", "not_delivered", "damaged", "goodwill"]},
        "line_items": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["sku", "quantity"],
                "additionalProperties": False,
                "properties": {
                    "sku": {"type": "string", "maxLength": 40},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": {"type": "number", "minimum": 0},
                },
            },
        },
        "notify_customer": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 2000},
    },
}
LEAD_OWNER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["lead_id", "new_owner", "reason"],
    "additionalProperties": False,
    "properties": {
        "lead_id": {"type": "string", "pattern": "^lead_[0-9]+$"},
        "new_owner": {"type": "string", "format": "email", "maxLength": 254},
        "reason": {"type": "string", "maxLength": 500},
    },
}


def seed(n_agents: int) -> list[str]:
    """A department, two action types and n agents, each with an executor
    grant on refunds (with limits, so the daily counters are read) and a
    contributor grant on lead reassignment. Returns one fresh raw key per agent."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from agents import services as agent_services
    from agents.models import Agent, Grant, Tier
    from approvals.models import ActionType, Department, Risk
    from audit.log import Actor

    owner, _ = get_user_model().objects.get_or_create(username="apibench-owner")
    department, _ = Department.objects.get_or_create(slug="apibench", defaults={"name": "API bench"})
    refund, _ = ActionType.objects.update_or_create(
        slug="bench.payments.refund",
        defaults={"name": "Refund", "risk": Risk.MEDIUM, "reversible": True, "payload_schema": REFUND_SCHEMA,
                  "amount_path": "amount", "currency_path": "currency", "routing_department": department},
    )  # fmt: skip
    lead_owner, _ = ActionType.objects.update_or_create(
        slug="bench.crm.update_lead_owner",
        defaults={"name": "Reassign a lead", "risk": Risk.LOW, "payload_schema": LEAD_OWNER_SCHEMA,
                  "routing_department": department},
    )  # fmt: skip
    executor_terms = {
        "tier": Tier.EXECUTOR,
        "max_amount_per_action": Decimal("500.00"),
        "auto_approve_max_amount": Decimal("100.00"),
        # Daily limits far above what the bench proposes: never hit, always counted.
        "max_actions_per_day": 10_000_000,
        "max_amount_per_day": Decimal("1000000000.00"),
        "min_confidence": Decimal("0.800"),
    }
    keys = []
    for i in range(n_agents):
        agent, _ = Agent.objects.update_or_create(
            slug=f"apibench-{i}",
            defaults={"name": f"API bench {i}", "owner": owner, "department": department, "purpose": "Benchmark."},
        )
        Grant.objects.update_or_create(agent=agent, action_type=refund, defaults=executor_terms)
        Grant.objects.update_or_create(agent=agent, action_type=lead_owner, defaults={"tier": Tier.CONTRIBUTOR})
        keys.append(agent_services.issue_key(agent, actor=Actor.system("api_bench"), label="bench")[1])
    return keys


# ---------------------------------------------------------------- the requests


def _refund(seq: int, amount: str) -> dict[str, Any]:
    return {
        "action_type": "bench.payments.refund",
        "payload": {
            "order_id": f"ORD-{seq % 10**8:08d}",
            "customer_id": f"cus_{seq * 7919 % 10**10:010d}",
            "amount": float(amount),
            "currency": "EUR",
            "reason": "duplicate_charge",
            "line_items": [
                {"sku": "SKU-4411-BLK", "quantity": 1, "unit_price": float(amount) / 2},
                {"sku": "SKU-0093-RED", "quantity": 2, "unit_price": float(amount) / 4},
            ],
            "notify_customer": True,
            "note": "Second capture of the same card within a minute; no second shipment exists.",
        },
        "reasoning": f"Order ORD-{seq % 10**8:08d} was captured twice; the duplicate capture has no shipment "
        "and the customer asked for the money back in ticket ZD-48213. Refunding the duplicate only.",
        "confidence": 0.93,
        "amount": amount,
        "context": _context(seq, 1834),
    }


def _lead_owner(seq: int) -> dict[str, Any]:
    return {
        "action_type": "bench.crm.update_lead_owner",
        "payload": {
            "lead_id": f"lead_{seq}",
            "new_owner": "jordan.lee@example.com",
            "reason": "Territory moved to EMEA-North after the account's HQ relocation.",
        },
        "reasoning": "The lead's company moved its headquarters; EMEA-North owns that territory now.",
        "confidence": 0.88,
        "context": _context(seq, 912),
    }


def _context(seq: int, tokens: int) -> dict[str, Any]:
    return {
        "ticket": f"ZD-{48000 + seq % 1000}",
        "triggering_user": "support-queue@example.com",
        "resources": [f"order:ORD-{seq % 10**8:08d}", f"customer:cus_{seq * 7919 % 10**10:010d}"],
        "data_classification": "internal",
        "agent_version": "2.4.1",
        "tokens_used": tokens,
    }


# Every proposal must get a 201: 40 % approved by policy (executor, within
# limits), 20 % over the auto-approve limit (pending), 40 % contributor (pending).
KINDS = (
    lambda seq: _refund(seq, "42.00"),
    lambda seq: _lead_owner(seq),
    lambda seq: _refund(seq, "250.00"),
    lambda seq: _refund(seq, "18.50"),
    lambda seq: _lead_owner(seq),
)


def request_factory(path: str, port: int, keys: list[str], concurrency: int) -> loadgen.RequestFactory:
    """The same bodies and headers for both endpoints; idempotency keys are
    unique per run, so every API proposal is new (201), none a replay."""
    run = secrets.token_hex(4)

    def make(connection: int, n: int) -> bytes:
        seq = n * concurrency + connection
        body = json.dumps(KINDS[seq % len(KINDS)](seq)).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {keys[seq % len(keys)]}\r\n"
            f"Idempotency-Key: {run}-{connection}-{n}\r\n"
            "X-Forwarded-Proto: https\r\n"  # as the TLS-terminating proxy in front would send
            "User-Agent: countersign-bench/1.0\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return make


# ---------------------------------------------------------------- the server


def server_env(db_pool: int | None) -> dict[str, str]:
    """Production variables, nothing inherited but the basics of a shell."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings_bare",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1",
        SITE_URL="https://127.0.0.1",
        HTTPS="1",
        TRUST_X_FORWARDED_PROTO="1",
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=REDIS_URL,
        AUDIT_SEALING="background",
        LOG_LEVEL="WARNING",
    )
    if db_pool is not None:
        env["DB_POOL_SIZE"] = str(db_pool)
    return env


class Server:
    """uvicorn in its own process group, stopped on exit whatever happens."""

    def __init__(self, workers: int, port: int, env: dict[str, str]) -> None:
        self.workers, self.port, self.env = workers, port, env
        self.log = tempfile.NamedTemporaryFile(prefix="api_bench-uvicorn-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        uvicorn = str(Path(sys.executable).with_name("uvicorn"))
        return [uvicorn, "config.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers), "--proxy-headers"]  # fmt: skip

    def __enter__(self) -> Server:
        atexit.register(self.stop)
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.log.close()  # the server writes to its own copy
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.stop()
        if exc_type is None:
            Path(self.log.name).unlink(missing_ok=True)
        else:
            print(f"uvicorn's log is kept: {self.log.name}", file=sys.stderr)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def _wait_until_answering(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            if _answers(self.port):
                # The other workers boot alongside the first; give them time before the warm-up.
                time.sleep(2)
                return
            time.sleep(0.2)
        raise RuntimeError(f"uvicorn did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /api/v1/me/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n")
            return conn.recv(12).startswith(b"HTTP/1.1")
    except OSError:
        return False


# ---------------------------------------------------------------- CPU accounting


@dataclass(frozen=True)
class CpuSample:
    """Seconds of CPU, summed over cores."""

    machine: float
    server: float  # uvicorn: supervisor and workers
    client: float  # this process: the load generator
    postgres: float  # every PostgreSQL process, and the backends that have exited
    redis: float

    def minus(self, earlier: CpuSample) -> CpuSample:
        return CpuSample(*(getattr(self, f) - getattr(earlier, f) for f in self.__dataclass_fields__))

    @property
    def others(self) -> float:
        """Whatever else ran: the kernel's own work, and other people's processes."""
        return self.machine - self.server - self.client - self.postgres - self.redis


def cpu_probe(server: Server) -> CpuSample:
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal, *_ = (int(x) for x in stat.readline().split()[1:])
    ticks = {"server": 0, "postgres": 0, "redis": 0}
    for name, fields in _processes():
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        if server.process is not None and int(fields[2]) == server.process.pid:
            ticks["server"] += utime + stime
        elif name == "postgres":
            # A backend lives for one request: once reaped, its time is in
            # the postmaster's children's time.
            ticks["postgres"] += utime + stime + cutime + cstime
        elif name == "redis-server":
            ticks["redis"] += utime + stime
    return CpuSample(
        machine=(user + nice + system + irq + softirq + steal) / CLK_TCK,
        server=ticks["server"] / CLK_TCK,
        client=time.process_time(),
        postgres=ticks["postgres"] / CLK_TCK,
        redis=ticks["redis"] / CLK_TCK,
    )


def _processes() -> Iterator[tuple[str, list[str]]]:
    """(command name, the fields of /proc/<pid>/stat after the name) of every process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        name, _, rest = text.partition(" (")[2].rpartition(")")
        yield name, rest.split()


def wait_for_quiet(limit: float, others_max: float = 0.3) -> float:
    """Wait (up to `limit` seconds) until other processes use under
    `others_max` of a core; returns what they used last."""
    deadline = time.monotonic() + limit
    while True:
        before = _machine_busy()
        time.sleep(1.0)
        busy = _machine_busy() - before
        if busy < others_max or time.monotonic() > deadline:
            return busy
        time.sleep(1.0)


def _machine_busy() -> float:
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal, *_ = (int(x) for x in stat.readline().split()[1:])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


# ---------------------------------------------------------------- rounds


@dataclass
class Measured:
    label: str
    rounds: list[loadgen.Round]

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.rounds)

    @property
    def p50(self) -> float:
        return statistics.median(r.percentile(0.50) for r in self.rounds)

    @property
    def p99(self) -> float:
        return statistics.median(r.percentile(0.99) for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    def summary(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "p50_ms": self.p50,
            "p99_ms": self.p99,
            "errors": self.errors,
            "rounds": [r.rate for r in self.rounds],
            "cpu_ms_per_request": self.cpu_ms_per_request(),
        }

    def cpu_ms_per_request(self) -> dict[str, float]:
        """Median over rounds of each CPU share, in ms per answered request."""
        fields = [*CpuSample.__dataclass_fields__, "others"]
        return {f: statistics.median(getattr(r.probe, f) * 1000 / max(1, r.ok) for r in self.rounds) for f in fields}


def interleaved(server: Server, keys: list[str], args: argparse.Namespace) -> dict[str, Measured]:
    """bare, API, bare, API, …: drift on the machine (autovacuum, caches,
    a neighbour's job) hits both endpoints alike."""
    measured = {"bare": Measured("bare view", []), "api": Measured("API intake", [])}
    for n in range(args.rounds):
        for name, path in (("bare", BARE_PATH), ("api", API_PATH)):
            others = wait_for_quiet(args.quiet_wait)
            result = loadgen.run(
                name,
                server.port,
                request_factory(path, server.port, keys, args.concurrency),
                concurrency=args.concurrency,
                warmup=args.warmup,
                duration=args.duration,
                probe=lambda: cpu_probe(server),
            )
            measured[name].rounds.append(result)
            print(
                f"  round {n + 1} {name:4}: {result.rate:7,.0f}/s  p50 {result.percentile(0.5):6.1f} ms  "
                f"p99 {result.percentile(0.99):6.1f} ms  errors {result.errors}  (others used {others:.2f} cores "
                f"before, {result.probe.others / args.duration:.2f} during)",
                flush=True,
            )
            settle()
    return measured


def settle() -> None:
    """Between rounds: let the audit sequencer finish, then start every round
    from the same tables (an API round must not pay for the last one's rows)."""
    from django.db import connection

    time.sleep(1.0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE approvals_action, bench_bare_row CASCADE")
        for table in ("approvals_action", "bench_bare_row", "audit_auditevent", "agents_agentkey"):
            cursor.execute(f"VACUUM ANALYZE {table}")


# ---------------------------------------------------------------- report


def report(workers: int, args: argparse.Namespace, measured: dict[str, Measured]) -> float:
    bare, api = measured["bare"], measured["api"]
    ratio = api.rate / bare.rate
    pool = "as shipped" if args.db_pool is None else args.db_pool
    print()
    print(
        f"uvicorn --workers {workers}, {args.concurrency} in flight, median of {args.rounds} rounds of "
        f"{args.duration:.0f} s after {args.warmup:.0f} s warm-up, DB_POOL_SIZE={pool}"
    )
    print(f"  {'':12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}   rounds (req/s)")
    for m in (bare, api):
        rounds = ", ".join(f"{r.rate:,.0f}" for r in m.rounds)
        print(f"  {m.label:12} {m.rate:8,.0f} {m.p50:8.1f} {m.p99:8.1f} {m.errors:7}   {rounds}")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"  ratio API/bare throughput: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})")
    columns = ("machine", "server", "client", "postgres", "redis", "others")
    print("  CPU ms per request: " + " ".join(f"{c:>8}" for c in columns))
    for m in (bare, api):
        cpu = m.cpu_ms_per_request()
        print(f"    {m.label:16} " + " ".join(f"{cpu[c]:8.2f}" for c in columns))
    print("    (server: uvicorn workers; postgres: its backends, one per request; others: kernel and the rest)")
    for m in (bare, api):
        for r in m.rounds:
            for failure in r.failures:
                print(f"  {m.label} error: {' '.join(failure.split())[:200]}")
    return ratio


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="2", help="comma-separated uvicorn worker counts, e.g. 2,3,4")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured seconds before each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per endpoint, interleaved")
    parser.add_argument("--agents", type=int, default=64, help="enough that no agent nears its rate limit")
    parser.add_argument("--db-pool", type=int, default=None, help="DB_POOL_SIZE (0: none; default: as shipped)")
    parser.add_argument("--quiet-wait", type=float, default=60, help="longest wait for a quiet machine per round")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--policy-calls", type=int, default=100_000, help="0 skips the policy bench")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()
    # Ctrl-C and SIGTERM both unwind as KeyboardInterrupt (even when started
    # in the background, where SIGINT comes ignored), so the server is stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    django_on_postgres(DATABASE)
    import redis

    redis_client = redis.Redis.from_url(REDIS_URL)
    _forget_throttles(redis_client)
    keys = seed(args.agents)
    _create_bare_table()
    settle()

    runs = []
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            print(f"uvicorn --workers {workers}: starting", flush=True)
            with Server(workers, args.port, server_env(args.db_pool)) as server:
                measured = interleaved(server, keys, args)
            ratio = report(workers, args, measured)
            summary = {name: m.summary() for name, m in measured.items()}
            runs.append({"workers": workers, **summary, "ratio": ratio})
            print(flush=True)
    finally:
        _purge_queue(redis_client)

    results: dict[str, Any] = {"concurrency": args.concurrency, "duration_s": args.duration, "runs": runs}
    if args.policy_calls:
        policy = policy_bench.measure(args.policy_calls)
        policy_bench.report(policy)
        results["policy"] = policy_bench.as_dict(policy)
    write_json(args.json, results)


def _create_bare_table() -> None:
    from django.db import connection

    from bench.bare import CREATE_TABLE

    with connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE)


def _forget_throttles(redis_client: Any) -> None:
    """Rate-limit history from an earlier run would turn this run's first seconds into 429s."""
    for key in redis_client.scan_iter(match="*throttle_agent_*"):
        redis_client.delete(key)


def _purge_queue(redis_client: Any) -> None:
    """No worker consumes the bench's routing tasks: drop them, and say how many there were."""
    print(f"routing tasks enqueued to Redis and purged: {redis_client.llen(CELERY_QUEUE):,}")
    redis_client.delete(CELERY_QUEUE)


if __name__ == "__main__":
    main()
