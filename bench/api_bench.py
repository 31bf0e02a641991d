"""Agent API intake benchmark: POST /api/v1/actions/ against the same job
written by hand (bench/hand/) and a bare one-row insert view
(bench/bare.py), interleaved in one run on one server.

    .venv/bin/python bench/api_bench.py [--workers 2] [--concurrency 32] [--duration 20] [--rounds 2]
                                        [--serial-duration 5] [--policy-calls 100000] [--json PATH]
    .venv/bin/python bench/api_bench.py --check    # the hand-written intake answers as the API does

One uvicorn per worker count, started as the Procfile's `web` process
(`uvicorn … --workers N --proxy-headers`) on bench/asgi_bench.py (the
product's application with the hand-written intake at its own path), with
production variables: DEBUG off, HTTPS behind a trusted proxy, PostgreSQL (a
dedicated database, `--database`) and a Redis server of the bench's own
(`--redis-port`, started and stopped here: its CPU is the bench's alone; Celery
is not eager, so routing tasks are only enqueued, as in production). Rounds
alternate API, hand-written, bare; each starts from a week of earlier
proposals and none of today's (`settle`), and each endpoint gets a serial
window (one connection, one request at a time) and then a loaded one
(`--concurrency` connections). Reported per endpoint, the median over rounds:
proposals/s, p50/p99 under load, CPU per request (uvicorn + the database's
PostgreSQL backends + the Redis server, from /proc, over the loaded window,
divided by the answered requests; the load generator's own CPU apart), and
the serial p50; then the ratios API / hand-written. Prints numbers (and with
--json writes them to PATH); asserts nothing.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import loadgen
import policy_bench
from _setup import ROOT, django_on_postgres, write_json

DATABASE = "countersign_apibench"
CELERY_QUEUE = "countersign"  # settings.CELERY_TASK_DEFAULT_QUEUE
ENDPOINTS = {  # in the order of each round
    "api": ("API intake", "/api/v1/actions/"),
    "hand": ("hand-written", "/bench/hand/actions/"),  # bench/asgi_bench.py routes /bench/hand/ there
    "bare": ("bare view", "/bench/bare/"),
}
TARGET_CPU_RATIO = 2.0  # API / hand-written, CPU per request
TARGET_SERIAL_P50_MS = 6.0  # the API's
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
    unique per run, so every API proposal is new (201), none a replay. Each
    connection goes round all the agents: the server's workers may take
    unequal shares of the connections, and a connection twice as fast as the
    others must not take its own agents past their rate limit."""
    run = secrets.token_hex(4)

    def make(connection: int, n: int) -> bytes:
        seq = n * concurrency + connection
        body = json.dumps(KINDS[seq % len(KINDS)](seq)).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {keys[(connection + n) % len(keys)]}\r\n"
            f"Idempotency-Key: {run}-{connection}-{n}\r\n"
            "X-Forwarded-Proto: https\r\n"  # as the TLS-terminating proxy in front would send
            "User-Agent: countersign-bench/1.0\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return make


# ---------------------------------------------------------------- the server


def server_env(db_pool: int | None, redis_url: str) -> dict[str, str]:
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
        REDIS_URL=redis_url,
        AUDIT_SEALING="background",
        LOG_LEVEL="WARNING",
    )
    if db_pool is not None:
        env["DB_POOL_SIZE"] = str(db_pool)
    return env


class Process:
    """A server in its own process group, stopped on exit whatever happens;
    its output kept in a file, shown when it fails."""

    name = "process"

    def __init__(self, port: int, cwd: Path = ROOT) -> None:
        self.port, self.cwd = port, cwd
        self.log = tempfile.NamedTemporaryFile(prefix=f"api_bench-{self.name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def answers(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Process:
        atexit.register(self.stop)
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
            print(f"{self.name}'s log is kept: {self.log.name}", file=sys.stderr)

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
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])


class RedisServer(Process):
    """A Redis of the bench's own: nobody else's commands in its CPU time, nothing of theirs in its keys."""

    name = "redis-server"

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(7) == b"+PONG\r\n"
        except OSError:
            return False


class Server(Process):
    """uvicorn as the Procfile starts it, on the bench's application (bench/asgi_bench.py)."""

    name = "uvicorn"

    def __init__(self, workers: int, port: int, env: dict[str, str], cwd: Path = ROOT) -> None:
        super().__init__(port, cwd)
        self.workers, self._env = workers, env

    def command(self) -> list[str]:
        uvicorn = str(Path(sys.executable).with_name("uvicorn"))
        return [uvicorn, "bench.asgi_bench:application", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers), "--proxy-headers"]  # fmt: skip

    def env(self) -> dict[str, str]:
        return self._env

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"GET /api/v1/me/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n")
                answering = conn.recv(12).startswith(b"HTTP/1.1")
        except OSError:
            return False
        if answering:
            # The other workers boot alongside the first; give them time before the warm-up.
            time.sleep(2)
        return answering


# ---------------------------------------------------------------- CPU accounting


@dataclass(frozen=True)
class CpuSample:
    """Seconds of CPU, summed over cores."""

    machine: float
    server: float  # uvicorn: supervisor and workers
    client: float  # this process: the load generator
    postgres: float  # the processes of the bench's database: its backends and autovacuum workers
    redis: float  # the bench's own Redis server

    def minus(self, earlier: CpuSample) -> CpuSample:
        return CpuSample(*(getattr(self, f) - getattr(earlier, f) for f in self.__dataclass_fields__))

    @property
    def serving(self) -> float:
        """What answering cost: the figure to judge by."""
        return self.server + self.postgres + self.redis

    @property
    def others(self) -> float:
        """Whatever else ran: the kernel's own work, and other people's processes."""
        return self.machine - self.server - self.client - self.postgres - self.redis


def cpu_probe(server: Server, redis_server: RedisServer, database: str) -> CpuSample:
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal, *_ = (int(x) for x in stat.readline().split()[1:])
    ticks = {"server": 0, "postgres": 0, "redis": 0}
    for pid, name, fields in _processes():
        spent = int(fields[11]) + int(fields[12])  # utime + stime
        if server.process is not None and int(fields[2]) == server.process.pid:
            ticks["server"] += spent
        elif redis_server.process is not None and pid == redis_server.process.pid:
            ticks["redis"] += spent
        elif name == "postgres" and database in _cmdline(pid).split():
            # With the pools, the backends live as long as the server: their
            # own times hold what they did (no exited backends to account for).
            # PostgreSQL's shared processes (checkpointer, WAL writer) serve
            # everyone's databases on this machine: left out, with the noise.
            ticks["postgres"] += spent
    return CpuSample(
        machine=(user + nice + system + irq + softirq + steal) / CLK_TCK,
        server=ticks["server"] / CLK_TCK,
        client=time.process_time(),
        postgres=ticks["postgres"] / CLK_TCK,
        redis=ticks["redis"] / CLK_TCK,
    )


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command name, the fields of /proc/<pid>/stat after the name) of every process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        name, _, rest = text.partition(" (")[2].rpartition(")")
        yield int(stat.parent.name), name, rest.split()


def _cmdline(pid: int) -> str:
    """A PostgreSQL process's title: "postgres: 15/main: postgres <database> 127.0.0.1(port) idle"."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


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

CPU_COLUMNS = ("serving", "server", "postgres", "redis", "client", "others", "machine")


@dataclass
class Measured:
    label: str
    rounds: list[loadgen.Round] = field(default_factory=list)  # under load
    serial: list[loadgen.Round] = field(default_factory=list)  # one request at a time

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
    def serial_p50(self) -> float:
        return statistics.median(r.percentile(0.50) for r in self.serial)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in (*self.rounds, *self.serial))

    def summary(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "p50_ms": self.p50,
            "p99_ms": self.p99,
            "serial_p50_ms": self.serial_p50,
            "errors": self.errors,
            "rounds": [r.rate for r in self.rounds],
            "cpu_ms_per_request": self.cpu_ms_per_request(self.rounds),
            "serial_cpu_ms_per_request": self.cpu_ms_per_request(self.serial),
        }

    @staticmethod
    def cpu_ms_per_request(rounds: list[loadgen.Round]) -> dict[str, float]:
        """Median over rounds of each CPU share, in ms per answered request."""
        return {c: statistics.median(getattr(r.probe, c) * 1000 / max(1, r.ok) for r in rounds) for c in CPU_COLUMNS}


def interleaved(server: Server, probe: Any, keys: list[str], args: argparse.Namespace) -> dict[str, Measured]:
    """API, hand-written, bare, API, …: drift on the machine (autovacuum,
    caches, a neighbour's job) hits every endpoint alike."""
    measured = {name: Measured(label) for name, (label, _) in ENDPOINTS.items()}
    for n in range(args.rounds):
        for name, (_, path) in ENDPOINTS.items():
            others = wait_for_quiet(args.quiet_wait)
            # One at a time first, on a settled machine: after the loaded
            # round the audit sealer and autovacuum still work off its rows.
            serial = loadgen.run(
                name, server.port, request_factory(path, server.port, keys, 1),
                concurrency=1, warmup=0.5, duration=args.serial_duration, probe=probe,
            )  # fmt: skip
            loaded = loadgen.run(
                name, server.port, request_factory(path, server.port, keys, args.concurrency),
                concurrency=args.concurrency, warmup=args.warmup, duration=args.duration, probe=probe,
            )  # fmt: skip
            measured[name].rounds.append(loaded)
            measured[name].serial.append(serial)
            cpu = loaded.probe.serving * 1000 / max(1, loaded.ok)
            print(
                f"  round {n + 1} {name:4}: {loaded.rate:7,.0f}/s  p50 {loaded.percentile(0.5):6.1f} ms  "
                f"p99 {loaded.percentile(0.99):6.1f} ms  CPU {cpu:5.2f} ms/req  serial p50 "
                f"{serial.percentile(0.5):5.2f} ms  errors {loaded.errors + serial.errors}  (others used "
                f"{others:.2f} cores before, {loaded.probe.others / args.duration:.2f} during)",
                flush=True,
            )
            settle()
    return measured


def settle() -> None:
    """Between rounds: let the audit sequencer finish, then start every round
    from the same tables (a round must not pay for the last one's rows): the
    earlier days' history and none of today's, analyzed."""
    from django.db import connection

    time.sleep(1.0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE approvals_action, bench_bare_row CASCADE")
        cursor.execute(HISTORY)
        for table in ("approvals_action", "bench_bare_row", "audit_auditevent", "agents_agentkey"):
            cursor.execute(f"VACUUM ANALYZE {table}")


# The earlier days' proposals, a hundred a day per grant for a week. Without
# them a round starts from an empty table, analyzed as empty, and the planner
# may then read a grant's day counters through the action type's index,
# scanning every agent's rows of the day (7.5 ms a proposal once the table
# held 15,000 rows, against 0.46 ms through the (agent, type, day) index).
HISTORY = """
INSERT INTO approvals_action (
    id, agent_id, action_type_id, grant_id, department_id, status, payload, reasoning, amount, currency, context,
    request_fingerprint, verdict, verdict_code, verdict_reason, priority, created_at, updated_at, callback_url)
SELECT gen_random_uuid(), g.agent_id, g.action_type_id, g.id, a.department_id, 'approved', '{}', '', 10, '', '{}',
       '', 'approved', '', '', 0, t.at, t.at, ''
FROM agents_grant g
JOIN agents_agent a ON a.id = g.agent_id
CROSS JOIN LATERAL (
    SELECT date_trunc('day', now()) - make_interval(days => d) + make_interval(mins => 14 * n) AS at
    FROM generate_series(1, 7) d, generate_series(1, 100) n
) t
WHERE a.slug LIKE 'apibench-%'
"""


# ---------------------------------------------------------------- report


def ratios(measured: dict[str, Measured]) -> dict[str, float]:
    api, hand, bare = measured["api"], measured["hand"], measured["bare"]
    api_cpu, hand_cpu = (m.cpu_ms_per_request(m.rounds)["serving"] for m in (api, hand))
    return {
        "cpu_api_hand": api_cpu / hand_cpu,
        "serial_p50_api_hand": api.serial_p50 / hand.serial_p50,
        "rate_api_hand": api.rate / hand.rate,
        "rate_api_bare": api.rate / bare.rate,
    }


def report(workers: int, args: argparse.Namespace, measured: dict[str, Measured]) -> dict[str, float]:
    pool = "as shipped" if args.db_pool is None else args.db_pool
    print()
    print(
        f"uvicorn --workers {workers}, {args.concurrency} in flight, median of {args.rounds} rounds of "
        f"{args.duration:.0f} s after {args.warmup:.0f} s warm-up, serial {args.serial_duration:.0f} s, "
        f"DB_POOL_SIZE={pool}, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"  {'':13} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} {'serial p50':>10} {'errors':>6}")
    for m in measured.values():
        cpu = m.cpu_ms_per_request(m.rounds)["serving"]
        print(f"  {m.label:13} {m.rate:7,.0f} {m.p50:7.1f} {m.p99:7.1f} {cpu:10.2f} {m.serial_p50:10.2f} {m.errors:6}")
    found = ratios(measured)
    cpu_verdict = "meets" if found["cpu_api_hand"] <= TARGET_CPU_RATIO else "MISSES"
    serial_verdict = "meets" if measured["api"].serial_p50 < TARGET_SERIAL_P50_MS else "MISSES"
    cpu_ratio = found["cpu_api_hand"]
    print(f"  API / hand-written CPU per request: {cpu_ratio:.2f} (target <= {TARGET_CPU_RATIO}: {cpu_verdict})")
    print(
        f"  API serial p50: {measured['api'].serial_p50:.2f} ms (target < {TARGET_SERIAL_P50_MS} ms: {serial_verdict});"
        f" API / hand-written {found['serial_p50_api_hand']:.2f}"
    )
    print(f"  throughput API / hand-written {found['rate_api_hand']:.2f}, API / bare {found['rate_api_bare']:.2f}")
    print("  CPU ms per request, under load: " + " ".join(f"{c:>8}" for c in CPU_COLUMNS))
    for m in measured.values():
        cpu = m.cpu_ms_per_request(m.rounds)
        print(f"    {m.label:29} " + " ".join(f"{cpu[c]:8.2f}" for c in CPU_COLUMNS))
    print("    (serving = server + postgres + redis; server: uvicorn; postgres: the bench database's backends;")
    print("     redis: the bench's own; others: the kernel, PostgreSQL's shared processes and everyone else)")
    for m in measured.values():
        for r in (*m.rounds, *m.serial):
            for failure in r.failures:
                print(f"  {m.label} error: {' '.join(failure.split())[:200]}")
    return found


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="2", help="comma-separated uvicorn worker counts, e.g. 2,3,4")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per loaded round")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured seconds before each loaded round")
    parser.add_argument("--serial-duration", type=float, default=5, help="measured seconds, one request at a time")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per endpoint, interleaved")
    parser.add_argument("--agents", type=int, default=64, help="enough that no agent nears its rate limit")
    parser.add_argument("--db-pool", type=int, default=None, help="DB_POOL_SIZE (0: none; default: as shipped)")
    parser.add_argument("--quiet-wait", type=float, default=60, help="longest wait for a quiet machine per round")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--redis-port", type=int, default=6391, help="for the bench's own Redis server")
    parser.add_argument("--database", default=DATABASE, help="PostgreSQL database, created and migrated if new")
    parser.add_argument("--policy-calls", type=int, default=100_000, help="0 skips the policy bench")
    parser.add_argument(
        "--check", action="store_true", help="only compare the hand-written intake's answers with the API's"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()
    # Ctrl-C and SIGTERM both unwind as KeyboardInterrupt (even when started
    # in the background, where SIGINT comes ignored), so the servers are stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    django_on_postgres(args.database)
    keys = seed(args.agents)
    _create_bare_table()
    settle()

    if args.check:
        sys.exit(check(args, keys))
    with RedisServer(args.redis_port) as redis_server:
        runs = []
        for workers in (int(w) for w in args.workers.split(",")):
            print(f"uvicorn --workers {workers}: starting", flush=True)
            with Server(workers, args.port, server_env(args.db_pool, redis_server.url)) as server:
                measured = interleaved(server, lambda: cpu_probe(server, redis_server, args.database), keys, args)
            found = report(workers, args, measured)
            summary = {name: m.summary() for name, m in measured.items()}
            runs.append({"workers": workers, **summary, **found, "load_average": os.getloadavg()})
            print(flush=True)
        _count_queued(redis_server.url)

    results: dict[str, Any] = {"concurrency": args.concurrency, "duration_s": args.duration, "runs": runs}
    if args.policy_calls:
        policy = policy_bench.measure(args.policy_calls)
        policy_bench.report(policy)
        results["policy"] = policy_bench.as_dict(policy)
    write_json(args.json, results)


def check(args: argparse.Namespace, keys: list[str]) -> int:
    import intake_check

    with (
        RedisServer(args.redis_port) as redis_server,
        Server(2, args.port, server_env(args.db_pool, redis_server.url)) as server,
    ):
        return intake_check.run(server.port, keys)


def _create_bare_table() -> None:
    from django.db import connection

    from bench.bare import CREATE_TABLE

    with connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE)


def _count_queued(redis_url: str) -> None:
    """No worker consumes the bench's routing tasks; its Redis goes with it."""
    import redis

    print(f"routing tasks enqueued to Redis: {redis.Redis.from_url(redis_url).llen(CELERY_QUEUE):,}")


if __name__ == "__main__":
    main()
