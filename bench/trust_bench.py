"""Trust benchmark: the evaluation and the agent page on a million actions.

    .venv/bin/python bench/trust_bench.py [--actions 1000000] [--repeat 30] [--reseed] [--explain] [--json PATH]

Seeds (once; about two minutes) 1,000 grants: 250 agents in 5 departments,
each with one grant per risk (low, medium, high, critical), a fifth of them
observers, executors on low and medium for two fifths, contributors for the
rest; each grant with its own rejection rate (0-19 %), so the evaluation has
promotions, demotions and holds to find. `--actions` actions by bulk SQL,
spread evenly over 30 days and inserted oldest first, as proposals arrive
(most of them decided, a few waiting, expired, vetoed or rolled back), and
the leads' shadow marks on half the shadowed ones. Five agents run a new
version.

Then prints:
- the assessment of all 1,000 grants (metrics + rule, reading only);
- the full hourly evaluation, which also makes each move (row, audit event,
  email after commit) - the first run after seeding moves many grants, an
  hourly run in steady state few;
- /agents/<slug>/ server time (Django test client, DEBUG off, p50/p95) with
  its query count, plus /agents/ and the department dashboard.

Runs on its own database (countersign_trustbench; DATABASE_URL overrides it)
and asserts nothing; with --json it also writes the numbers to PATH. Each
run first resets the grants' tiers to the seeded ones, so runs compare.
Results and how to read them: docs/trust.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

DATABASE = "countersign_trustbench"
AGENTS = 250
DEPARTMENTS = 5
RISKS = ("low", "medium", "high", "critical")
REDIS_URL = "redis://127.0.0.1:6379/13"
CELERY_QUEUE = "trustbench"
RELEASED_AGENTS = 5  # agents whose version moved on since their grants' tiers were set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    parser.add_argument("--reseed", action="store_true", help="rebuild the data even if it is there")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the grant metrics query")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()

    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
    # As in production: the tier-change emails are queued for a worker (none
    # runs here; the queue is dropped at the end), not sent by the evaluation.
    os.environ.setdefault("REDIS_URL", REDIS_URL)
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "0")
    os.environ.setdefault("CELERY_QUEUE", CELERY_QUEUE)
    from _setup import django_on_postgres, write_json

    django_on_postgres(DATABASE)
    from django.conf import settings

    assert not settings.DEBUG, "Measure with DEBUG off: DEBUG keeps every query's SQL."
    fleet = _fleet()
    results: dict[str, Any] = {"actions": args.actions, "grants": len(fleet["grants"]), "seeded_s": None}
    if args.reseed or _action_count() != args.actions:
        started = time.perf_counter()
        _seed_actions(args.actions, fleet["lead"])
        results["seeded_s"] = time.perf_counter() - started
        print(f"seeded {args.actions:,} actions over {len(fleet['grants']):,} grants in {results['seeded_s']:.1f} s")
    _reset_tiers()
    try:
        results["evaluation"] = _bench_evaluation()
    finally:
        _drop_queued_emails()
    if args.explain:
        _explain()
    results["pages"] = _bench_pages(fleet, args.repeat)
    write_json(args.json, results)


# ---------------------------------------------------------------- data


def _fleet() -> dict[str, Any]:
    """Departments, leads, agents, action types and grants. Idempotent."""
    from django.contrib.auth import get_user_model

    from agents.models import Agent, Grant
    from approvals.models import ActionType, Department

    users = get_user_model()
    admin, _ = users.objects.get_or_create(username="trust-admin", defaults={"is_staff": True})
    owner, _ = users.objects.get_or_create(username="trust-owner", defaults={"email": "owner@example.com"})
    leads, departments = [], []
    for d in range(DEPARTMENTS):
        department, _ = Department.objects.get_or_create(slug=f"trust-{d}", defaults={"name": f"Trust {d}"})
        lead, _ = users.objects.get_or_create(username=f"trust-lead-{d}", defaults={"email": f"lead{d}@example.com"})
        department.leads.add(lead)
        departments.append(department)
        leads.append(lead)
    action_types = [
        ActionType.objects.get_or_create(
            slug=f"trustbench.{risk}", defaults={"name": f"Trust bench {risk}", "risk": risk}
        )[0]
        for risk in RISKS
    ]
    if Grant.objects.filter(agent__slug__startswith="trust-agent-").count() < AGENTS * len(RISKS):
        agents = [
            Agent.objects.get_or_create(
                slug=f"trust-agent-{a}",
                defaults={
                    "name": f"Trust agent {a}",
                    "owner": owner,
                    "department": departments[a % DEPARTMENTS],
                    "purpose": "Bench.",
                    "version": "1.0",
                },
            )[0]
            for a in range(AGENTS)
        ]
        for agent in agents:
            for action_type in action_types:
                Grant.objects.get_or_create(agent=agent, action_type=action_type)
    grants = list(Grant.objects.filter(agent__slug__startswith="trust-agent-").order_by("pk"))
    return {"admin": admin, "lead": leads[0], "leads": leads, "departments": departments, "grants": grants}


def _reset_tiers() -> None:
    """Every grant back to its seeded tier (agent n // 4, risk n % 4: observers
    for a fifth of the agents, executors on low and medium for two fifths,
    contributors otherwise), a fresh tier history, five agents on a new version."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM approvals_tierchange")
        cursor.execute(
            """
            UPDATE agents_grant g SET
                tier = CASE WHEN ((b.n / 4) % 5) = 0 THEN 'observer'
                            WHEN ((b.n / 4) % 5) IN (1, 2) AND b.n % 4 < 2 THEN 'executor'
                            ELSE 'contributor' END,
                tier_changed_at = now() - interval '60 days',
                tier_agent_version = '1.0'
            FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM agents_grant
                  WHERE agent_id IN (SELECT id FROM agents_agent WHERE slug LIKE 'trust-agent-%%')) b
            WHERE g.id = b.id
            """
        )
        cursor.execute(
            "UPDATE agents_agent SET version = CASE WHEN id IN (SELECT id FROM agents_agent"
            " WHERE slug LIKE 'trust-agent-%%' ORDER BY id LIMIT %s) THEN '1.1' ELSE '1.0' END"
            " WHERE slug LIKE 'trust-agent-%%'",
            [RELEASED_AGENTS],
        )


def _action_count() -> int:
    from approvals.models import Action

    return Action.objects.count()


def _seed_actions(count: int, lead: Any) -> None:
    """Bulk SQL: this is the benchmark's setting, not the code under test."""
    from django.db import connection

    _reset_tiers()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE approvals_action, approvals_decision, approvals_execution CASCADE")
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
                verdict_code, verdict_reason, priority, amount, confidence, created_at, decided_at, updated_at,
                agent_id, grant_id, action_type_id, department_id)
            SELECT gen_random_uuid(), s.status, s.verdict, '{"order_id": "ORD-1"}', 'Bench proposal.',
                   '{"agent_version": "1.0"}', '', '', '', 0, 42.00, 0.900, s.created_at,
                   CASE WHEN s.status NOT IN ('pending', 'expired', 'shadowed')
                        THEN s.created_at + s.r3 * interval '2 hours' END,
                   now(), s.agent_id, s.grant_id, s.action_type_id, s.department_id
            FROM (
                SELECT g.*, x.r3, now() - (%s - x.i) * (interval '30 days' / %s) AS created_at,
                    CASE WHEN g.tier = 'observer' THEN 'shadowed'
                         WHEN g.tier = 'executor' AND x.r < 0.85 THEN 'approved'
                         ELSE 'pending' END AS verdict,
                    CASE WHEN g.tier = 'observer' THEN 'shadowed'
                         WHEN g.tier = 'executor' AND x.r < 0.85 THEN
                              CASE WHEN x.r2 < g.p_reject / 4 THEN 'rejected'
                                   WHEN x.r2 < g.p_reject / 2 THEN 'rolled_back' ELSE 'succeeded' END
                         WHEN x.r2 < 0.02 THEN 'pending'
                         WHEN x.r2 < 0.04 THEN 'expired'
                         WHEN x.r2 < 0.04 + 0.96 * g.p_reject THEN 'rejected'
                         ELSE 'succeeded' END AS status
                FROM (SELECT i, random() AS r, random() AS r2, random() AS r3
                      FROM generate_series(0, %s - 1) i) x
                JOIN bench_grants g ON g.n = x.i %% %s
            ) s
            """,
            [count, count, count, grants],
        )
        cursor.execute(
            """
            INSERT INTO approvals_decision (action_id, user_id, verdict, comment, created_at)
            SELECT a.id, %s, CASE WHEN random() < 1 - g.p_reject THEN 'would_approve' ELSE 'would_reject' END, '',
                   a.created_at + interval '1 hour'
            FROM approvals_action a JOIN bench_grants g ON g.grant_id = a.grant_id
            WHERE a.status = 'shadowed' AND random() < 0.5
            """,
            [lead.pk],
        )
        cursor.execute("DROP TABLE bench_grants")
        cursor.execute("VACUUM ANALYZE approvals_action")
        cursor.execute("VACUUM ANALYZE approvals_decision")


# ---------------------------------------------------------------- the evaluation


def _bench_evaluation() -> dict[str, Any]:
    from agents.models import Grant
    from approvals.autonomy import trust

    everything = Grant.objects.all()
    trust.assess_grants(everything)  # warm: connection, caches
    assessments = []
    for _ in range(3):
        started = time.perf_counter()
        assessed = trust.assess_grants(everything)
        assessments.append(time.perf_counter() - started)
    moves = sum(1 for e in assessed if e.assessment.target is not None and e.assessment.automatic)
    print(
        f"assess {len(assessed):,} grants: best {min(assessments):.2f} s, worst {max(assessments):.2f} s "
        f"({moves} automatic moves due)"
    )
    results: dict[str, Any] = {
        "assess_best_s": min(assessments),
        "assess_worst_s": max(assessments),
        "moves_due": moves,
    }
    runs = {
        "first_run": "evaluate, first hourly run (makes the moves)",
        "next_run": "evaluate, next hourly run (steady state)",
    }
    for key, label in runs.items():
        started = time.perf_counter()
        changes = trust.evaluate()
        elapsed = time.perf_counter() - started
        kinds: dict[str, int] = {}
        for change in changes:
            kinds[change.reason] = kinds.get(change.reason, 0) + 1
        print(f"{label}: {elapsed:.2f} s, {len(changes)} tier changes {kinds or ''}")
        results[key] = {"seconds": elapsed, "tier_changes": len(changes), "by_reason": kinds}
    return results


def _drop_queued_emails() -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    print(f"tier-change emails queued for a worker and dropped: {client.llen(os.environ['CELERY_QUEUE']):,}")
    client.delete(os.environ["CELERY_QUEUE"])


def _explain() -> None:
    """The plan of the grant metrics' main query, over every grant."""
    from datetime import timedelta

    from django.db import connection
    from django.db.models import Count, F
    from django.utils import timezone

    from approvals.autonomy.metrics import HUMAN_APPROVED
    from approvals.models import Action

    since = timezone.now() - timedelta(days=7)
    scope = Action.objects.filter(created_at__gte=since).filter(created_at__gte=F("grant__tier_changed_at"))
    query = scope.values("grant_id").annotate(n=Count("pk"), approved=Count("pk", filter=HUMAN_APPROVED))
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\n".join(row[0] for row in cursor.fetchall()))


# ---------------------------------------------------------------- the pages


def _bench_pages(fleet: dict[str, Any], repeat: int) -> dict[str, Any]:
    from django.test import Client

    from agents.models import Agent

    # An agent with an executor grant, in the first department.
    agent = Agent.objects.filter(slug="trust-agent-5").get()
    lead = agent.department.leads.first()
    pages = [
        ("agent", "/agents/<slug>/ (lead)", lead, f"/agents/{agent.slug}/"),
        ("agents", "/agents/ (admin, 250 agents)", fleet["admin"], "/agents/"),
        ("department", "/departments/<slug>/ (lead)", lead, f"/departments/{agent.department.slug}/"),
    ]
    actions = agent.actions.count()
    print(f"{agent.slug}: {agent.grants.count()} grants, {actions:,} actions")
    results: dict[str, Any] = {}
    for key, label, user, url in pages:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        assert client.get(url).status_code == 200, url  # warm
        queries = _queries_of(client, url)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(f"{label}: p50 {statistics.median(times):.0f} ms, p95 {p95:.0f} ms, {queries} queries")
        results[key] = {"p50_ms": statistics.median(times), "p95_ms": p95, "queries": queries, "actions": actions}
    return results


def _queries_of(client: Any, url: str) -> int:
    """Counted by wrapping the cursor: a request resets connection.queries as it starts."""
    from django.db import connection

    queries: list[str] = []

    def count(execute: Any, sql: str, *args: Any) -> Any:
        queries.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(count):
        client.get(url)
    return len(queries)


if __name__ == "__main__":
    main()
