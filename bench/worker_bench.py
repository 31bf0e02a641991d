"""A prefork Celery worker routing proposals, as the Procfile runs it, with
Celery's stock Django fixup (bench/celery_stock.py: connections and the pool
closed around every task) and with config/celery.py's (pools kept warm).

Each round starts a worker, warms it up, then hands it --tasks routing tasks
(one audit event each) at once and waits until every action is routed and
every event sealed. Per mode and round it prints:

- tasks/s: from the first to the last `routed_at`;
- connections opened per task: PostgreSQL's own count (pg_stat_database's
  `sessions`) over the burst;
- worker CPU ms per task: user + system of the worker and its children
  over the burst (from /proc);
- sealer failures: "Sealing the audit chain failed" in the worker's log.

    env DATABASE_URL=postgres://postgres@127.0.0.1:5432/countersign_worker_bench \\
        REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/worker_bench.py [--tasks 400] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from _setup import ROOT, django_on_postgres, write_json

MODES = {"stock": "bench.celery_stock", "warm": "config"}
DEADLINE_SECONDS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=400, help="routing tasks per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per mode, interleaved")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's prefork processes")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()

    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"  # proposals queue their routing in Redis
    os.environ["AUDIT_SEALING"] = "inline"  # this process's own events; the worker seals in the background
    django_on_postgres("countersign_worker_bench")

    agent, action_type = world()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as logs:
        for _ in range(args.rounds):
            for mode, app in MODES.items():
                results[mode].append(one_round(app, agent, action_type, args, Path(logs) / f"{mode}.log"))
    report(results, args.tasks)
    write_json(args.json, results)


def one_round(app: str, agent: Any, action_type: Any, args: argparse.Namespace, log: Path) -> dict[str, Any]:
    queue, parked = f"workerbench-{secrets.token_hex(4)}", f"workerbench-parked-{secrets.token_hex(4)}"
    worker = start(app, queue, args.concurrency, log)
    try:
        # Warm up: every child routes and seals before the clock starts.
        wait_until_routed_and_sealed(proposed(agent, action_type, 4 * args.concurrency, queue))
        # The burst's tasks wait under another name, then land on the
        # worker's queue at once, so the producer never holds the worker back.
        ids = proposed(agent, action_type, args.tasks, parked)
        opened_before, cpu_before = sessions_opened(), tree_cpu_seconds(worker.pid)
        redis_client().rename(parked, queue)
        wait_until_routed_and_sealed(ids)
        opened, cpu = sessions_opened() - opened_before, tree_cpu_seconds(worker.pid) - cpu_before
    finally:
        stop(worker)
        redis_client().delete(queue, parked)  # with the mails the routing queued for later
    return {
        "tasks_per_second": tasks_per_second(ids),
        "connections_per_task": opened / len(ids),
        "worker_cpu_ms_per_task": cpu * 1000 / len(ids),
        "sealer_failures": log.read_text().count("Sealing the audit chain failed"),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def report(results: dict[str, list[dict[str, Any]]], tasks: int) -> None:
    print(f"\n{tasks} routing tasks per round, a prefork worker (load average at the end of each round)")
    print(f"{'mode':6} {'tasks/s':>8} {'conns/task':>11} {'CPU ms/task':>12} {'sealer fails':>13}  load")
    for mode, rounds in results.items():
        for r in rounds:
            print(
                f"{mode:6} {r['tasks_per_second']:8.0f} {r['connections_per_task']:11.2f} "
                f"{r['worker_cpu_ms_per_task']:12.1f} {r['sealer_failures']:13d}  {' '.join(r['loadavg'])}"
            )


# ---------------------------------------------------------------- the worker


def start(app: str, queue: str, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "prefork", "-Q", queue]
    command += ["--concurrency", str(concurrency), "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"]
    command += ["--loglevel", "WARNING"]
    env = {**os.environ, "AUDIT_SEALING": "background"}
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(os.environ["REDIS_URL"])


def tree_cpu_seconds(pid: int) -> float:
    """User + system time of a process and its children, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone since the listing
        process, parent = int(stat.parent.name), int(fields[1])
        if pid in (process, parent):
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# ---------------------------------------------------------------- the data


def world() -> tuple[Any, Any]:
    """A department with a lead, an agent and an action type it may propose, for the lead to decide."""
    from django.contrib.auth import get_user_model

    from agents.models import Agent, Grant, Tier
    from approvals.models import ActionType, Department

    tag = secrets.token_hex(3)
    users = get_user_model().objects
    lead = users.create_user(f"bench-lead-{tag}", f"lead-{tag}@example.com")
    owner = users.create_user(f"bench-owner-{tag}", f"owner-{tag}@example.com")
    department = Department.objects.create(name=f"Worker bench {tag}", slug=f"worker-bench-{tag}")
    department.leads.add(lead)
    agent = Agent.objects.create(slug=f"bench-bot-{tag}", name="Bench bot", owner=owner, department=department)
    action_type = ActionType.objects.create(slug=f"bench.note_{tag}", name="Bench note")
    Grant.objects.create(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return agent, action_type


def proposed(agent: Any, action_type: Any, n: int, queue: str) -> list[str]:
    """n proposals, their routing tasks sent to `queue`."""
    from celery import current_app

    from approvals import services

    current_app.conf.task_default_queue = queue
    return [
        str(
            services.propose(agent, action_type, payload={"note": i}, reasoning="Bench.", confidence=Decimal("0.95"))[
                0
            ].pk
        )
        for i in range(n)
    ]


def sessions_opened() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def wait_until_routed_and_sealed(ids: list[str]) -> None:
    from approvals.models import Action
    from audit.models import AuditEvent

    deadline = time.monotonic() + DEADLINE_SECONDS
    while (
        Action.objects.filter(pk__in=ids, routed_at__isnull=True).exists()
        or AuditEvent.objects.filter(seq__isnull=True).exists()
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"The worker did not route and seal {len(ids)} proposals in {DEADLINE_SECONDS:.0f} s.")
        time.sleep(0.1)


def tasks_per_second(ids: list[str]) -> float:
    from django.db.models import Max, Min

    from approvals.models import Action

    span = Action.objects.filter(pk__in=ids).aggregate(first=Min("routed_at"), last=Max("routed_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    return (len(ids) - 1) / seconds if seconds else float("inf")


if __name__ == "__main__":
    main()
