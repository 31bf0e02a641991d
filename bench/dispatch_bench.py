"""Dispatch on the real stack: PostgreSQL, Redis, `celery worker` and
`celery beat` processes, and a signed-webhook receiver on loopback.

1. Latency: a lead approves (services.approve, as the lead's request does),
   one action at a time; we time from the call to the receiver having the
   request. Target: p95 < 100 ms.
2. Kill switch: approvals stream in at --rate per second; halfway the agent
   is suspended. We report when the last dispatch started relative to the
   suspension's commit. Target: at most 1 s later (in fact: none after it).
3. Killed worker: the receiver holds a request open; the worker is killed
   (SIGKILL, its whole process group); a fresh worker and beat's sweep
   redo it with the same Idempotency-Key. Target: within 30 s of the kill,
   with one effect at the receiver.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cs_dispatch_bench \\
    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/dispatch_bench.py [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from _setup import ROOT, django_on_postgres, write_json

SECRET = secrets.token_urlsafe(32)
START_TIMEOUT = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--approvals", type=int, default=200, help="approvals timed one by one (phase 1)")
    parser.add_argument("--rate", type=float, default=40.0, help="approvals per second in phase 2")
    parser.add_argument("--stream-seconds", type=float, default=4.0, help="length of the phase 2 stream")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()

    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"  # approvals go through Redis to the worker
    os.environ["CELERY_QUEUE"] = f"dispatchbench-{secrets.token_hex(4)}"
    django_on_postgres("cs_dispatch_bench")
    sys.path.insert(0, str(ROOT))
    from tests.support.receivers import Receiver

    with Receiver(SECRET) as receiver, tempfile.TemporaryDirectory() as tmp:
        world = World.create(receiver.url)
        logs = Path(tmp)
        worker = start("worker", logs)
        beat = start("beat", logs)
        try:
            world.wait_for_worker(receiver)
            results = {
                "latency": latency(world, receiver, args.approvals),
                "kill_switch": kill_switch(world, receiver, args.rate, args.stream_seconds),
                "killed_worker": killed_worker(world, receiver, worker, logs),
            }
            write_json(args.json, results)
        finally:
            for process in (worker, beat, *RESCUERS):
                stop(process)
            forget_queue()


# ---------------------------------------------------------------- the stack


RESCUERS: list[subprocess.Popen[bytes]] = []


def start(role: str, logs: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "config", role, "--loglevel", "WARNING"]
    if role == "worker":
        command += ["-Q", os.environ["CELERY_QUEUE"], "--concurrency", "2", "-n", f"bench-{time.monotonic_ns()}@%h"]
    else:
        command += ["--schedule", str(logs / "celerybeat-schedule")]
    env = {**os.environ, "AUDIT_SEALING": "background"}
    with (logs / f"{role}.log").open("ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)  # the worker's pool children too
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def forget_queue() -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(os.environ["CELERY_QUEUE"])
    client.close()


# ---------------------------------------------------------------- data


class World:
    """One department, its lead, an agent and a webhook action type aimed at the receiver."""

    def __init__(self, agent: Any, lead: Any, action_type: Any) -> None:
        self.agent, self.lead, self.action_type = agent, lead, action_type

    @classmethod
    def create(cls, url: str) -> World:
        from django.contrib.auth import get_user_model

        from agents.models import Agent, Grant, Tier
        from approvals.models import ActionType, Department, Executor

        tag = secrets.token_hex(3)
        users = get_user_model().objects
        lead = users.create_user(f"bench-lead-{tag}", f"lead-{tag}@example.com")
        owner = users.create_user(f"bench-owner-{tag}", f"owner-{tag}@example.com")
        department = Department.objects.create(name=f"Dispatch bench {tag}", slug=f"dispatch-bench-{tag}")
        department.leads.add(lead)
        agent = Agent.objects.create(slug=f"bench-bot-{tag}", name="Bench bot", owner=owner, department=department)
        action_type = ActionType.objects.create(
            slug=f"bench.refund_{tag}",
            name="Bench refund",
            executor=Executor.WEBHOOK,
            webhook_url=f"{url}/hooks/refund/",
            rollback_url=f"{url}/hooks/refund/rollback/",
            webhook_secret=SECRET,
        )
        Grant.objects.create(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
        return cls(agent, lead, action_type)

    def proposed(self, n: int) -> list[str]:
        from approvals import services

        return [
            str(
                services.propose(
                    self.agent,
                    self.action_type,
                    payload={"order": i},
                    reasoning="Bench.",
                    confidence=Decimal("0.95"),
                )[0].pk
            )
            for i in range(n)
        ]

    def approve(self, action_id: str) -> None:
        from approvals import services

        services.approve(action_id, self.lead)

    def wait_for_worker(self, receiver: Any) -> None:
        """One approval through the stack, so the timings below don't include the worker's start."""
        [action_id] = self.proposed(1)
        self.approve(action_id)
        deadline = time.monotonic() + START_TIMEOUT
        while not any(r.key == action_id for r in receiver.requests):
            if time.monotonic() > deadline:
                raise SystemExit("The worker did not dispatch within 60 s; see its log.")
            time.sleep(0.05)


def arrival(receiver: Any, action_id: str, timeout: float = 10.0) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in receiver.requests:
            if request.key == action_id:
                return request.at
        time.sleep(0.001)
    return None


# ---------------------------------------------------------------- phases


def latency(world: World, receiver: Any, n: int) -> dict[str, Any]:
    print(f"\n1. approve -> receiver has the request ({n} approvals, one at a time)")
    times = []
    for action_id in world.proposed(n):
        started = time.time()
        world.approve(action_id)
        arrived = arrival(receiver, action_id)
        if arrived is None:
            raise SystemExit(f"Action {action_id} never reached the receiver.")
        times.append((arrived - started) * 1000)
        time.sleep(0.01)
    times.sort()
    p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
    print(f"   p50 {p50:.1f} ms   p95 {p95:.1f} ms   max {times[-1]:.1f} ms   (target p95 < 100 ms)")
    return {"approvals": n, "p50_ms": p50, "p95_ms": p95, "max_ms": times[-1]}


def kill_switch(world: World, receiver: Any, rate: float, seconds: float) -> dict[str, Any]:
    from django.db import close_old_connections

    from agents.services import resume_agent, suspend_agent
    from approvals.models import Execution, ExecutionKind
    from audit.log import Actor

    total = int(rate * seconds)
    print(f"\n2. kill switch under a stream of {rate:.0f} approvals/s for {seconds:.0f} s ({total} approvals)")
    stream = world.proposed(total)
    suspended_at: list[datetime] = []

    def suspend_halfway() -> None:
        time.sleep(seconds / 2)
        suspend_agent(world.agent, actor=Actor.user(world.lead), reason="Dispatch bench: the kill switch.")
        from django.utils import timezone

        suspended_at.append(timezone.now())
        close_old_connections()

    switch = threading.Thread(target=suspend_halfway)
    switch.start()
    for action_id in stream:
        world.approve(action_id)
        time.sleep(1 / rate)
    switch.join()
    time.sleep(2.0)  # let the worker drain what the stream queued
    starts = list(
        Execution.objects.filter(action_id__in=stream, kind=ExecutionKind.DISPATCH).values_list("started_at", flat=True)
    )
    after = sum(1 for start in starts if start > suspended_at[0])
    # On a busy machine the worker may not have started any before the suspension: no last start then.
    last_start_ms = (max(starts) - suspended_at[0]).total_seconds() * 1000 if starts else None
    last = "none started" if last_start_ms is None else f"last start {last_start_ms:+.0f} ms from it"
    print(
        f"   dispatches started: {len(starts)} of {total}; after the suspension: {after}; {last} (target <= +1000 ms)"
    )
    resume_agent(world.agent, actor=Actor.user(world.lead), reason="Dispatch bench: resume.")
    deadline = time.monotonic() + 30
    while Execution.objects.filter(action_id__in=stream, kind=ExecutionKind.DISPATCH).count() < total:
        if time.monotonic() > deadline:
            raise SystemExit("The held dispatches did not go after the resume.")
        time.sleep(0.1)
    print(f"   after the resume: all {total} dispatched")
    return {"approvals": total, "started": len(starts), "started_after": after, "last_start_ms": last_start_ms}


def killed_worker(world: World, receiver: Any, worker: subprocess.Popen[bytes], logs: Path) -> dict[str, Any]:
    from approvals.models import Action
    from approvals.rules.lifecycle import Status

    timeout = world.action_type.webhook_timeout_seconds
    print(f"\n3. a worker killed mid-dispatch (webhook time-out {timeout} s, beat sweeping)")
    receiver.hold_first = True  # the receiver carries the call out, then keeps the worker waiting
    [action_id] = world.proposed(1)
    world.approve(action_id)
    if arrival(receiver, action_id) is None:
        raise SystemExit("The dispatch never reached the receiver.")
    stop(worker, signal.SIGKILL)
    killed = time.monotonic()
    RESCUERS.append(start("worker", logs))
    while Action.objects.get(pk=action_id).status != Status.SUCCEEDED:
        if time.monotonic() - killed > 60:
            raise SystemExit("Not recovered within 60 s.")
        time.sleep(0.1)
    recovered = time.monotonic() - killed
    calls = [r for r in receiver.requests if r.key == action_id]
    effects = sum(1 for key in receiver.effects if key == action_id)
    print(
        f"   re-dispatched and succeeded {recovered:.1f} s after the kill (target < 30 s); "
        f"{len(calls)} calls with the same Idempotency-Key, {effects} effect at the receiver"
    )
    receiver.release.set()
    return {"recovered_s": recovered, "calls": len(calls), "effects": effects}


if __name__ == "__main__":
    main()
