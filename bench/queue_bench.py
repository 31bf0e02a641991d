"""Queue benchmark: what a lead waits for.

    .venv/bin/python bench/queue_bench.py page [--pending 10000] [--repeat 100] [--explain] [--json PATH]
    .venv/bin/python bench/queue_bench.py live [--leads 50] [--proposals 200] [--gap 0.5] [--db-pool N]
                                               [--pending 0] [--browser] [--json PATH]

`page`: /queue/ server time with a long queue, in-process through the Django
test client (no network), DEBUG off, on PostgreSQL: p50/p95 and the number
of queries for page 1, a later page, the htmx re-sync, the shadow lane, the
triage filters (filtered pages, a search, a sort) and the preview pane. Every
row carries its one-line preview of the effect.

`live`: POST /api/v1/actions/ -> the row arriving on every lead's socket, on
the real stack started here as subprocesses: uvicorn (2 workers), a Celery
worker, PostgreSQL, Redis. See bench/queue_live.py.

Both run on a dedicated database (countersign_queuebench; DATABASE_URL
overrides it) and print numbers (with --json they also write them to PATH);
they assert nothing. `live` empties the
queue, so the next `page` run seeds its data again (about 15 s). Results and
how to read them: docs/queue.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

DATABASE = "countersign_queuebench"
HTMX = {"HTTP_HX_REQUEST": "true"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    page = commands.add_parser("page", help="/queue/ server time with a long queue")
    page.add_argument("--pending", type=int, default=10_000)
    page.add_argument("--history", type=int, default=60_000, help="decided actions around them")
    page.add_argument("--repeat", type=int, default=100, help="timed requests per case")
    page.add_argument("--reseed", action="store_true", help="rebuild the data even if it is there")
    page.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE each query of a later page")
    page.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    live = commands.add_parser("live", help="POST -> row on 50 lead sockets, on the real stack")
    live.add_argument("--leads", type=int, default=50)
    live.add_argument("--proposals", type=int, default=200)
    live.add_argument("--gap", type=float, default=0.5, help="seconds between proposals")
    live.add_argument("--pending", type=int, default=0, help="pending rows already waiting in the department")
    live.add_argument("--db-pool", type=int, default=None, help="DB_POOL_SIZE (0: none; default: as shipped)")
    live.add_argument("--browser", action="store_true", help="also time the row into a Chromium page's DOM")
    live.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()
    if args.command == "page":
        page_bench(args)
    else:
        import queue_live

        queue_live.run(args, DATABASE)


# ---------------------------------------------------------------- /queue/ server time


@dataclass(frozen=True)
class Case:
    label: str
    url: str
    headers: dict[str, str]
    lead: int  # index into the fleet's leads


@dataclass
class Timing:
    case: Case
    ms: list[float]
    cpu_ms: list[float] = field(default_factory=list)  # this process's CPU time: what load elsewhere does not inflate
    queries: int = 0
    sql_ms: float = 0.0
    size: int = 0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cases(pending: int, first_pending: str) -> list[Case]:
    later = max(1, pending // 50 // 5)  # a fifth of the way down the queue
    return [
        Case("page 1", "/queue/", {}, 0),
        Case(f"page {later}", f"/queue/?page={later}", {}, 0),
        Case("htmx re-sync (page 1)", "/queue/", HTMX, 0),
        Case("shadow lane", "/queue/?lane=shadow", {}, 0),
        # The last lead leads all four departments: no single-department index walk.
        Case("page 1, lead of 4 departments", "/queue/", {}, -1),
        # Triage (approvals/reads/queue_filters.py): the filters, a search, a sort.
        Case("filtered: agent + risk", "/queue/?agent=queue-agent-3&risk=medium", {}, 0),
        Case("filtered: SLA overdue", "/queue/?sla=overdue", {}, 0),
        Case("filtered, page 2", "/queue/?risk=low&page=2", {}, 0),
        Case("search in payload", "/queue/?q=ORD-0000123", {}, 0),
        Case("sorted by amount", "/queue/?sort=amount", {}, 0),
        # The preview pane's fragment for the first row, as j/k asks for it.
        Case("preview pane", f"/queue/preview/{first_pending}/", {}, 0),
    ]


def page_bench(args: argparse.Namespace) -> None:
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    from _setup import django_on_postgres, write_json

    django_on_postgres(DATABASE)
    from django.conf import settings

    assert not settings.DEBUG, "Measure with DEBUG off: DEBUG keeps every query's SQL."
    import queue_seed

    fleet = queue_seed.fleet(50)
    if args.reseed or not queue_seed.has_queue(fleet, args.pending, args.history):
        started = time.perf_counter()
        queue_seed.fill_queue(fleet, pending=args.pending, shadowed=500, vetoable=10, history=args.history)
        print(f"seeded {args.pending:,} pending + {args.history:,} decided in {time.perf_counter() - started:.1f} s")
    clients = {index: _client(fleet.leads[index]) for index in (0, -1)}
    from approvals.models import Action

    first = Action.objects.filter(department=fleet.department, status="pending").order_by("-priority").first()
    timings = [Timing(case, []) for case in cases(args.pending, str(first.pk))]
    for timing in timings:
        _count_queries(clients[timing.case.lead], timing)
    _measure(clients, timings, args.repeat)
    _report(timings, args.pending)
    write_json(args.json, {"pending": args.pending, "cases": [_summary(t) for t in timings]})
    if args.explain:
        _explain(clients[0], timings[1].case)


def _client(user: Any) -> Any:
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


def _get(client: Any, case: Case) -> Any:
    response = client.get(case.url, **case.headers)
    assert response.status_code == 200, (case.url, response.status_code)
    return response


def _count_queries(client: Any, timing: Timing) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _get(client, timing.case)  # warm: templates compiled, connection open
    with CaptureQueriesContext(connection) as captured:
        response = _get(client, timing.case)
    timing.queries = len(captured)
    timing.sql_ms = 1000 * sum(float(query["time"]) for query in captured.captured_queries)
    timing.size = len(response.content)


def _measure(clients: dict[int, Any], timings: list[Timing], repeat: int) -> None:
    """Round-robin over the cases, so a burst of load elsewhere hits them alike."""
    for _ in range(5):
        for timing in timings:
            _get(clients[timing.case.lead], timing.case)
    for _ in range(repeat):
        for timing in timings:
            client = clients[timing.case.lead]
            started, cpu = time.perf_counter(), time.process_time()
            _get(client, timing.case)
            timing.ms.append(1000 * (time.perf_counter() - started))
            timing.cpu_ms.append(1000 * (time.process_time() - cpu))


def _report(timings: list[Timing], pending: int) -> None:
    load = os.getloadavg()[0]
    print(f"\n/queue/ server time, {pending:,} pending in the department, {len(timings[0].ms)} requests per case")
    print(f"(load average at the end: {load:.2f} on {os.cpu_count()} CPUs; CPU ms: this process only)")
    print(
        f"{'case':<32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'CPU p50':>8} {'CPU p95':>8}"
        f" {'queries':>8} {'SQL ms':>8} {'KiB':>6}"
    )
    for t in timings:
        cpu = sorted(t.cpu_ms)
        print(
            f"{t.case.label:<32} {statistics.median(t.ms):>8.1f} {t.percentile(0.95):>8.1f} {max(t.ms):>8.1f}"
            f" {statistics.median(cpu):>8.1f} {cpu[min(len(cpu) - 1, int(0.95 * len(cpu)))]:>8.1f}"
            f" {t.queries:>8} {t.sql_ms:>8.1f} {t.size / 1024:>6.0f}"
        )


def _summary(t: Timing) -> dict[str, Any]:
    return {
        "label": t.case.label,
        "requests": len(t.ms),
        "p50_ms": statistics.median(t.ms),
        "p95_ms": t.percentile(0.95),
        "max_ms": max(t.ms),
        "cpu_p50_ms": statistics.median(t.cpu_ms),
        "queries": t.queries,
        "sql_ms": t.sql_ms,
        "kib": t.size / 1024,
    }


def _explain(client: Any, case: Case) -> None:
    """EXPLAIN ANALYZE every query one request runs: where the SQL time goes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(client, case)
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query["sql"])
            plan = [line for (line,) in cursor.fetchall()]
            print(f"\n{query['sql'][:160]}...\n  " + "\n  ".join(plan))


if __name__ == "__main__":
    main()
