"""Simulator benchmark: a change replayed over a million recorded actions.

    .venv/bin/python bench/replay_bench.py [--actions 1000000] [--days 30] [--repeat 3] [--reseed] [--json PATH]

Seeds (once; a minute or two) the trust bench's fleet (bench/trust_bench.py:
1,000 grants, 250 agents in 5 departments, one grant per risk) and
`--actions` actions by bulk SQL over 30 days, as the policy would have
recorded them: each with its own amount (1-1,000) and confidence
(0.50-1.00), executor grants auto-approving up to 200.00 at 0.8 confidence,
a third of the grants with a daily limit of actions, most proposals decided
(some rejected, vetoed, rolled back, failed or left to expire), observers'
proposals shadowed with the leads' marks on half of them.

Then times `approvals.replay.report.simulate` (the replay, the comparison
and its audit event: what the page, the admin's preview and the command
run) for each kind of change, best and worst of `--repeat` runs:

- one grant's auto-approve limit raised (about 1,000 proposals);
- the low-risk action type raised to high (250 grants, a quarter of the actions);
- one department's promotion thresholds lowered (200 grants, a fifth);
- the global default policy, which every grant follows (all 1,000 grants, every action).

Runs on its own database (countersign_replaybench; DATABASE_URL overrides
it) and asserts nothing. Target: every replay under 5 s on PostgreSQL. Each
line also gives the CPU time of this process and of its PostgreSQL backend
(when the server runs on this machine): on a shared machine, the wall time
also counts the wait for a core. Results: docs/simulator.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

DATABASE = "countersign_replaybench"
TARGET_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reseed", action="store_true", help="rebuild the data even if it is there")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()

    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    from _setup import django_on_postgres, write_json

    django_on_postgres(DATABASE)
    from trust_bench import _fleet

    fleet = _fleet()
    results: dict[str, Any] = {"actions": args.actions, "grants": len(fleet["grants"]), "seeded_s": None}
    if args.reseed or _action_count() != args.actions:
        started = time.perf_counter()
        _seed(args.actions, fleet["lead"])
        results["seeded_s"] = time.perf_counter() - started
        print(f"seeded {args.actions:,} actions over {len(fleet['grants']):,} grants in {results['seeded_s']:.1f} s")
    results["replays"] = _bench(args.days, args.repeat)
    write_json(args.json, results)


def _action_count() -> int:
    from approvals.models import Action

    return Action.objects.count()


def _seed(count: int, lead: Any) -> None:
    """Bulk SQL: the benchmark's setting, not the code under test."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM approvals_tierchange")
        cursor.execute("TRUNCATE approvals_action, approvals_decision, approvals_execution CASCADE")
        # Tiers as the trust bench seeds them; limits so the policy has something to say.
        cursor.execute(
            """
            UPDATE agents_grant g SET
                tier = CASE WHEN ((b.n / 4) % 5) = 0 THEN 'observer'
                            WHEN ((b.n / 4) % 5) IN (1, 2) AND b.n % 4 < 2 THEN 'executor'
                            ELSE 'contributor' END,
                tier_changed_at = now() - interval '60 days',
                tier_agent_version = '1.0',
                auto_approve_max_amount = 200.00,
                min_confidence = 0.800,
                max_amount_per_action = 950.00,
                max_actions_per_day = CASE WHEN b.n % 3 = 0 THEN 60 END
            FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM agents_grant
                  WHERE agent_id IN (SELECT id FROM agents_agent WHERE slug LIKE 'trust-agent-%%')) b
            WHERE g.id = b.id
            """
        )
        cursor.execute("UPDATE agents_agent SET version = '1.0' WHERE slug LIKE 'trust-agent-%%'")
        cursor.execute(
            """
            CREATE TEMP TABLE bench_grants AS
            SELECT row_number() OVER (ORDER BY g.id) - 1 AS n, g.id AS grant_id, g.agent_id, g.action_type_id,
                   a.department_id, g.tier, ((row_number() OVER (ORDER BY g.id) - 1) * 7 % 20) / 100.0 AS p_reject
            FROM agents_grant g JOIN agents_agent a ON a.id = g.agent_id WHERE a.slug LIKE 'trust-agent-%%'
            """
        )
        cursor.execute("SELECT count(*) FROM bench_grants")
        (grants,) = cursor.fetchone()
        cursor.execute(
            """
            INSERT INTO approvals_action (id, status, verdict, payload, reasoning, context, request_fingerprint,
                verdict_code, verdict_reason, priority, amount, currency, confidence, created_at, decided_at,
                updated_at, callback_url, agent_id, grant_id, action_type_id, department_id)
            SELECT gen_random_uuid(), s.status, s.verdict, '{}', 'Bench proposal.', '{}', '', s.verdict, '', 0,
                   s.amount, 'EUR', s.confidence, s.created_at,
                   CASE WHEN s.status NOT IN ('pending', 'expired', 'shadowed', 'blocked')
                        THEN s.created_at + s.r3 * interval '2 hours' END,
                   now(), '', s.agent_id, s.grant_id, s.action_type_id, s.department_id
            FROM (
                SELECT v.*,
                    CASE WHEN v.verdict IN ('shadowed', 'blocked') THEN v.verdict
                         WHEN v.verdict = 'approved' THEN
                              CASE WHEN v.r2 < v.p_reject / 4 THEN 'rejected'
                                   WHEN v.r2 < v.p_reject / 2 THEN 'rolled_back'
                                   WHEN v.r2 > 0.99 THEN 'failed' ELSE 'succeeded' END
                         WHEN v.r2 < 0.02 THEN 'pending'
                         WHEN v.r2 < 0.04 THEN 'expired'
                         WHEN v.r2 < 0.04 + 0.96 * v.p_reject THEN 'rejected'
                         ELSE 'succeeded' END AS status
                FROM (
                    SELECT g.*, x.r2, x.r3, x.amount, x.confidence,
                        now() - (%s - x.i) * (interval '30 days' / %s) AS created_at,
                        CASE WHEN x.amount > 950 THEN 'blocked'
                             WHEN g.tier = 'observer' THEN 'shadowed'
                             WHEN g.tier = 'executor' AND g.n %% 4 < 2 AND x.amount <= 200 AND x.confidence >= 0.8
                                  THEN 'approved'
                             ELSE 'pending' END AS verdict
                    FROM (SELECT i, random() AS r2, random() AS r3,
                                 round((1 + random() * 999)::numeric, 2) AS amount,
                                 round((0.5 + random() * 0.5)::numeric, 3) AS confidence
                          FROM generate_series(0, %s - 1) i) x
                    JOIN bench_grants g ON g.n = x.i %% %s
                ) v
            ) s
            """,
            [count, count, count, grants],
        )
        cursor.execute(
            """
            INSERT INTO approvals_decision (action_id, user_id, verdict, comment, payload_digest, created_at)
            SELECT a.id, %s, CASE WHEN random() < 1 - g.p_reject THEN 'would_approve' ELSE 'would_reject' END, '', '',
                   a.created_at + interval '1 hour'
            FROM approvals_action a JOIN bench_grants g ON g.grant_id = a.grant_id
            WHERE a.status = 'shadowed' AND random() < 0.5
            """,
            [lead.pk],
        )
        cursor.execute("DROP TABLE bench_grants")
        cursor.execute("VACUUM ANALYZE approvals_action")
        cursor.execute("VACUUM ANALYZE approvals_decision")


def _changes() -> list[tuple[str, str, Any]]:
    from agents.models import Grant
    from approvals.replay import changes

    executor = Grant.objects.filter(agent__slug__startswith="trust-agent-", tier="executor").order_by("pk").first()
    assert executor is not None
    target = f"{executor.agent.slug}:{executor.action_type.slug}"
    return [
        (
            "grant",
            f"grant {target}: auto-approve up to 500",
            changes.proposed("grant", target, {"auto_approve_max_amount": "500"}),
        ),
        (
            "action_type",
            "trustbench.low: risk low → high",
            changes.proposed("action_type", "trustbench.low", {"risk": "high"}),
        ),
        (
            "department_policy",
            "trust-0's policy: promote at 90 % on 30 decisions",
            changes.proposed("policy", "trust-0", {"promote_threshold": "0.9", "min_decisions": "30"}),
        ),
        (
            "global_policy",
            "global default: demote under 85 %",
            changes.proposed("policy", "global", {"demote_threshold": "0.85"}),
        ),
    ]


def _bench(days: int, repeat: int) -> dict[str, Any]:
    from approvals.replay import report
    from audit.log import Actor

    results: dict[str, Any] = {}
    for key, label, change in _changes():
        times, cpu, pg_cpu, result = [], [], [], None
        for _ in range(repeat):
            started_pg = _backend_cpu()
            started, started_cpu = time.perf_counter(), time.process_time()
            result = report.simulate(change, actor=Actor.system("replay bench"), days=days)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            ended_pg = _backend_cpu()
            if started_pg is not None and ended_pg is not None:
                pg_cpu.append(ended_pg - started_pg)
        assert result is not None
        data = result.as_dict()
        new = data["newly_auto_approved"]
        met = "met" if max(times) < TARGET_S else "MISSED"
        print(
            f"{label}: best {min(times):.2f} s, worst {max(times):.2f} s ({met} < {TARGET_S:.0f} s; "
            f"CPU: this process {min(cpu):.2f} s, its PostgreSQL backend {_seconds(pg_cpu)}, "
            "the rest is parallel workers, reads made meanwhile and waiting); "
            f"{data['grants']:,} grants, {data['proposals']:,} proposals replayed, "
            f"{sum(abs(r['difference']) for r in data['verdicts']) // 2:,} verdicts moved, "
            f"{new['count']:,} newly auto-approved (cost {new['cost']['count']:,}), "
            f"{len(data['tier_changes']['replayed'])} tier changes"
        )
        results[key] = {
            "best_s": min(times),
            "worst_s": max(times),
            "cpu_best_s": min(cpu),
            "postgresql_backend_cpu_best_s": min(pg_cpu) if pg_cpu else None,
            "grants": data["grants"],
            "proposals": data["proposals"],
            "newly_auto_approved": new["count"],
            "tier_changes": len(data["tier_changes"]["replayed"]),
        }
    return results


def _backend_cpu() -> float | None:
    """The CPU seconds of this connection's PostgreSQL backend so far, when the server runs on this
    machine (read from /proc); None elsewhere."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds(measured: list[float]) -> str:
    return f"{min(measured):.2f} s" if measured else "not measured (not on this machine)"


if __name__ == "__main__":
    main()
