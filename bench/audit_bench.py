"""Audit trail benchmark: chain verification rate, and intake throughput
with chaining on against chaining off in the same run.

    .venv/bin/python bench/audit_bench.py [--events 300000] [--proposals 800] [--threads 4] [--json PATH]

Runs on PostgreSQL (DATABASE_URL, default a countersign_bench database on
127.0.0.1). Prints numbers (and with --json writes them to PATH); asserts
nothing.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from _setup import django_on_postgres, write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--proposals", type=int, default=800, help="per round, across all threads")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()
    django_on_postgres()

    _reset()
    rates: dict[str, list[float]] = {"off": [], "background": []}
    for _ in range(args.rounds):
        for mode in ("off", "background"):  # interleaved, so drift hits both alike
            rates[mode].append(_intake(mode, args.proposals, args.threads))
            _settle()
    off, on = statistics.median(rates["off"]), statistics.median(rates["background"])
    for mode, label in (("off", "off"), ("background", "on ")):
        rounds = ", ".join(f"{r:,.0f}" for r in rates[mode])
        print(f"intake, chaining {label}: {statistics.median(rates[mode]):,.0f} proposals/s (rounds: {rounds})")
    print(f"ratio on/off: {on / off:.2f}")

    verified, seconds = _verification(args.events)
    print(f"verification: {verified:,} events in {seconds:.2f}s = {verified / seconds:,.0f} events/s")
    write_json(
        args.json,
        {
            "intake_chaining_off": {"rate": off, "rounds": rates["off"]},
            "intake_chaining_on": {"rate": on, "rounds": rates["background"]},
            "ratio_on_off": on / off,
            "verification": {"events": verified, "seconds": seconds, "events_per_s": verified / seconds},
        },
    )


def _settle() -> None:
    """Between rounds: seal what an "off" round left (unbilled: that round
    chained nothing) and let the sequencer and autovacuum go quiet."""
    from audit import chain

    time.sleep(0.5)
    chain.seal_all()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE approvals_action")
        cursor.execute("VACUUM ANALYZE audit_auditevent")


def _reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # The audit tables refuse TRUNCATE: the bench's superuser switches triggers off.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("TRUNCATE audit_auditevent, audit_auditcheckpoint, approvals_action CASCADE")
        cursor.execute("SET session_replication_role = DEFAULT")


def _verification(n: int) -> tuple[int, float]:
    from audit.models import AuditEvent
    from audit.verification import verify

    batch = [
        AuditEvent(
            actor_kind="agent",
            actor_id=str(i % 50),
            actor_label=f"agent-{i % 50}",
            verb="action.proposed",
            object_type="approvals.action",
            object_id=f"{i:032x}",
            object_label="payments.refund by refund-bot (pending)",
            department_id=i % 4,
            agent_id=i % 50,
            after={"status": "pending", "verdict": "pending", "amount": f"{i % 997}.00"},
            context={"ip": "10.0.0.7", "user_agent": "countersign-client/1.0", "key_prefix": "csk_1a2b3c4d"},
        )
        for i in range(n)
    ]
    AuditEvent.objects.bulk_create(batch, batch_size=5000)
    _seal_everything()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")  # what autovacuum would have done by now
    started = time.perf_counter()
    result = verify()
    seconds = time.perf_counter() - started
    assert result.ok, result.problem
    return result.checked, seconds


def _seal_everything() -> None:
    """seal_all() gives up at once while another sealer holds the lock - here
    this process's background sequencer, started by the intake rounds, which
    wakes every few seconds - and verify() then checks only the sealed part."""
    from audit import chain
    from audit.models import AuditEvent

    while AuditEvent.objects.filter(seq__isnull=True).exists():
        if not chain.seal_all():
            time.sleep(0.1)  # the other sealer has the lock: let it finish


def _fleet():
    from django.contrib.auth import get_user_model

    from agents.models import Agent, Grant, Tier
    from approvals.models import ActionType, Department, Risk

    owner, _ = get_user_model().objects.get_or_create(username="bench-owner")
    department, _ = Department.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    action_type, _ = ActionType.objects.get_or_create(
        slug="bench.refund",
        defaults={"name": "Bench refund", "risk": Risk.MEDIUM, "payload_schema": {"type": "object"}},
    )
    agents = []
    for i in range(8):
        agent, _ = Agent.objects.get_or_create(
            slug=f"bench-agent-{i}", defaults={"name": f"Bench {i}", "owner": owner, "department": department}
        )
        Grant.objects.get_or_create(agent=agent, action_type=action_type, defaults={"tier": Tier.CONTRIBUTOR})
        agents.append(agent)
    return agents, action_type


def _intake(mode: str, proposals: int, threads: int) -> float:
    """Proposals per second through approvals.services.propose, the intake
    path behind the API, from several threads with their own connections."""
    from decimal import Decimal

    from django.conf import settings
    from django.db import connection

    from approvals import services

    settings.AUDIT_SEALING = mode
    agents, action_type = _fleet()
    per_thread = proposals // threads
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        agent = agents[index % len(agents)]
        barrier.wait()
        for n in range(per_thread):
            services.propose(
                agent,
                action_type,
                payload={"order": n},
                reasoning="Customer was double charged.",
                confidence=Decimal("0.9"),
            )
        connection.close()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
