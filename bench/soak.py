"""Soak: N minutes of proposals at a fixed rate while leads decide, then a
reconciliation of the load client, the actions table and the audit trail.

    .venv/bin/python bench/soak.py [--minutes 5] [--rate 20] [--agents 4] [--leads 3] [--json PATH]

The real stack, started here as subprocesses (bench/queue_live.py's Stack):
uvicorn config.asgi:application with 2 workers and a Celery worker on a
queue of its own, production variables (DEBUG off, background audit
sealing), PostgreSQL (a dedicated countersign_soak database; DATABASE_URL
overrides it) and Redis (database 15, prefixes of this run's own). The only
setting changed is AGENT_RATE_LIMIT, raised so that replays and retries are
not throttled. The engine is tests/support/soak.py (also run, shortened, by
tests/faults/test_soak.py): agents propose open-loop through POST /api/v1/actions/
with idempotency keys (every 10th sent twice); leads log in through /login/
and approve or reject rows of /queue/ as its htmx forms do.

Prints the load summary and the reconciliation table; exits 1 when the
counts disagree or any answer was a 5xx.
"""

from __future__ import annotations

import argparse
import secrets
import sys

import queue_live
from _setup import ROOT, django_on_postgres, write_json

DATABASE = "countersign_soak"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=20.0, help="proposals per second, all agents together")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--leads", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    args = parser.parse_args()

    django_on_postgres(DATABASE)
    sys.path.insert(0, str(ROOT))
    from tests.support import soak

    run_id = soak.new_run_id()
    fleet = soak.seed(run_id, agents=args.agents, leads=args.leads)
    port, tag = queue_live._free_port(), secrets.token_hex(4)
    env = queue_live._stack_env(port, tag, None)
    env["AGENT_RATE_LIMIT"] = "1000000/min"
    try:
        with queue_live.Stack(port, env) as stack:
            print(
                f"stack up: uvicorn (2 workers) on {stack.url}, celery worker; soak {run_id}: "
                f"{args.rate:g} proposals/s for {args.minutes:g} min, {args.agents} agents, {args.leads} leads"
            )
            load = soak.drive(stack.url, fleet, rate=args.rate, seconds=args.minutes * 60)
    finally:
        queue_live._forget_redis_keys(tag)
    result = soak.reconcile(fleet, load)
    print(soak.summary(load))
    print()
    print(result.table())
    write_json(
        args.json,
        {
            "minutes": args.minutes,
            "rate": args.rate,
            "sent": load.sent,
            "achieved_rate": round(load.achieved_rate, 2),
            "post_p50_ms": round(load.percentile(0.5), 1),
            "post_p99_ms": round(load.percentile(0.99), 1),
            "statuses": dict(load.proposal_statuses),
            "replays": dict(load.replays),
            "decisions_won": dict(load.decisions_won),
            "clicks_lost": load.clicks_lost,
            "rows": [row.__dict__ | {"agrees": row.agrees} for row in result.rows],
            "problems": result.problems,
            "ok": result.ok,
        },
    )
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
