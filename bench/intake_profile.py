"""Where the time of one proposal goes: queries per proposal, time per stage
(wall and CPU), and the hot spots, in-process.

    .venv/bin/python bench/intake_profile.py [--requests 400] [--top 25]

Drives POST /api/v1/actions/ and the bare view (bench/bare.py) with the
api_bench.py bodies against the same PostgreSQL database and Redis, with
production settings (Celery not eager, audit sealing in the background).
Queries are counted through the sync test client; stage times and the
profile come from the async test client, which runs the views as uvicorn
does: the sync view in a worker thread, async_to_sync hopping back to the
event loop. Both keep one database connection and one cache client; under
uvicorn each request opens new ones, and what that costs is measured on its
own at the end. One request at a time: the cost of a proposal, not its
behaviour under contention (api_bench.py measures that). Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

from _setup import ROOT, django_on_postgres

DATABASE = "countersign_apibench"
REDIS_URL = "redis://127.0.0.1:6379/12"
API_PATH = "/api/v1/actions/"
BARE_PATH = "/bench/bare/"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400, help="per measurement")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings_bare",
        REDIS_URL=REDIS_URL,
        CELERY_TASK_ALWAYS_EAGER="0",
        AUDIT_SEALING="background",
        ALLOWED_HOSTS="testserver",
    )
    django_on_postgres(DATABASE)
    import api_bench
    import redis

    from bench.bare import CREATE_TABLE

    redis_client = redis.Redis.from_url(REDIS_URL)
    _forget_throttles(redis_client)
    bodies = Bodies(api_bench.seed(16))
    _sql(CREATE_TABLE)
    try:
        queries_per_proposal(bodies)
        asyncio.run(_timed_parts(bodies, args.requests, args.top))
        per_request_setup()
    finally:
        _purge_queue(redis_client)


def _forget_throttles(redis_client: Any) -> None:
    """Rate-limit history from an earlier run would turn this run's first seconds into 429s."""
    for key in redis_client.scan_iter(match="*throttle_agent_*"):
        redis_client.delete(key)


def _purge_queue(redis_client: Any) -> None:
    """No worker consumes the routing tasks queued here: drop them, and say how many there were."""
    from django.conf import settings

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    print(f"routing tasks enqueued to Redis and purged: {redis_client.llen(queue):,}")
    redis_client.delete(queue)


async def _timed_parts(bodies: Bodies, n: int, top: int) -> None:
    from django.test import AsyncClient

    client = AsyncClient()
    for _ in range(100):  # warm-up: imports, first connections, caches
        await bodies.post(client, API_PATH)
        await bodies.post(client, BARE_PATH)
    await one_at_a_time(bodies, client, n)
    await stages(bodies, client, n)
    await profile(bodies, client, n, top)


class Bodies:
    """api_bench.py's bodies and headers, numbered on, each with a new idempotency key."""

    def __init__(self, keys: list[str]) -> None:
        import api_bench

        self.keys, self.kinds, self.n, self.run = keys, api_bench.KINDS, 0, os.urandom(4).hex()

    def request(self, kind: int | None = None, agent: int | None = None) -> tuple[str, dict[str, str]]:
        self.n += 1
        body = self.kinds[self.n % len(self.kinds) if kind is None else kind](self.n)
        headers = {
            "Authorization": f"Bearer {self.keys[self.n % len(self.keys) if agent is None else agent]}",
            "Idempotency-Key": f"{self.run}-{self.n}",
        }
        return json.dumps(body), headers

    def post_sync(self, client: Any, path: str, kind: int | None = None, agent: int | None = None) -> Any:
        body, headers = self.request(kind, agent)
        return _checked(client.post(path, body, content_type="application/json", headers=headers))

    async def post(self, client: Any, path: str) -> Any:
        body, headers = self.request()
        return _checked(await client.post(path, body, content_type="application/json", headers=headers))


def _checked(response: Any) -> Any:
    assert response.status_code == 201, (response.status_code, response.content[:500])
    return response


def _sql(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement)


# ---------------------------------------------------------------- queries


def queries_per_proposal(bodies: Bodies) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    labels = {0: "refund, executor within limits (approved)", 2: "refund over auto-approve (pending)",
              1: "lead reassignment, contributor (pending)"}  # fmt: skip
    for kind, label in labels.items():
        # Twice with one key: its last_used_at is written at most once a
        # minute, so the steady state is the second request, not the first.
        bodies.post_sync(client, API_PATH, kind, agent=kind)
        with CaptureQueriesContext(connection) as captured:
            bodies.post_sync(client, API_PATH, kind, agent=kind)
        print(f"API, {label}: {len(captured.captured_queries)} statements")
        for query in captured.captured_queries:
            print(f"    {_shorten(query['sql'])}")
    with CaptureQueriesContext(connection) as captured:
        bodies.post_sync(client, BARE_PATH)
    print(f"bare view: {len(captured.captured_queries)} statement")
    print()


def _shorten(sql: str, width: int = 130) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= width else sql[: width - 1] + "…"


# ---------------------------------------------------------------- one at a time


async def one_at_a_time(bodies: Bodies, client: Any, n: int) -> None:
    for label, path in (("bare view", BARE_PATH), ("API intake", API_PATH)):
        walls = []
        for _ in range(n):
            started = time.perf_counter()
            await bodies.post(client, path)
            walls.append(time.perf_counter() - started)
        print(
            f"{label:10} one at a time: mean {statistics.fmean(walls) * 1000:5.2f} ms, "
            f"median {statistics.median(walls) * 1000:5.2f} ms a request"
        )
    print()


# ---------------------------------------------------------------- stages


class StageClock:
    """Wall and CPU time (of the calling thread) spent in wrapped callables."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[label] += time.perf_counter() - wall
                self.cpu[label] += time.thread_time() - cpu
                self.calls[label] += 1

        return timed


def _stage_targets() -> list[tuple[str, object, str]]:
    """(label, owner, attribute), in the order a proposal meets them."""
    from agents.authentication import AgentKeyAuthentication
    from approvals import live, services, tasks
    from approvals.api import serializers, views
    from approvals.services import proposals

    return [
        ("whole DRF view (dispatch)", views.ActionListView, "dispatch"),
        ("  authenticate: key by prefix, last_used_at", AgentKeyAuthentication, "authenticate"),
        ("  throttle: history get + set in Redis", views.AgentRateThrottle, "allow_request"),
        ("  ProposalSerializer.is_valid", serializers.ProposalSerializer, "is_valid"),
        ("  services.propose", services, "propose"),
        ("    _record_proposal (in the transaction)", proposals, "_record_proposal"),
        ("      _locked_grant (and the gateway's pause)", proposals, "_locked_grant"),
        ("      _todays_counters", proposals, "_todays_counters"),
        ("      payload_errors (jsonschema)", proposals, "payload_errors"),
        ("      record_insert (the action and its event)", proposals, "record_insert"),
        ("    after commit: live.publish_action_proposed", live, "publish_action_proposed"),
        ("    after commit: route_actions.delay", tasks.route_actions, "delay"),
        ("  own_action (re-read, 3 queries)", views.AgentAPIView, "own_action"),
        ("  _answer (ActionSerializer)", views.ActionListView, "_answer"),
    ]


@contextmanager
def staged(clock: StageClock) -> Iterator[None]:
    with ExitStack() as patches:
        for label, owner, name in _stage_targets():
            original = getattr(owner, name)
            wrapped = clock.wrap(label, original)
            # Bound class and static methods stay callable as they were: the
            # wrapper closes over the bound original.
            if isinstance(owner, type) and isinstance(owner.__dict__.get(name), (classmethod, staticmethod)):
                wrapped = staticmethod(wrapped)
            patches.enter_context(mock.patch.object(owner, name, wrapped))
        yield


async def stages(bodies: Bodies, client: Any, n: int) -> None:
    clock = StageClock()
    started = time.perf_counter()
    with staged(clock):
        for _ in range(n):
            await bodies.post(client, API_PATH)
    total = (time.perf_counter() - started) * 1000 / n
    print(f"API intake by stage, ms a proposal (mean of {n}; CPU is the worker thread's own; wall - CPU = waiting):")
    print(f"  {'':48} {'calls':>6} {'wall':>7} {'CPU':>7}")
    print(f"  {'whole request, as the client saw it':48} {1:6.2f} {total:7.2f}")
    for label, _, _ in _stage_targets():
        calls = clock.calls[label] / n
        print(f"  {label:48} {calls:6.2f} {clock.wall[label] * 1000 / n:7.2f} {clock.cpu[label] * 1000 / n:7.2f}")
    print()


# ---------------------------------------------------------------- profile

AREAS = (  # (label, a fragment of the file path); the first match wins
    ("jsonschema", "/jsonschema"),
    ("jsonschema (referencing, rpds)", "/referencing/"),
    ("DRF", "/rest_framework/"),
    ("psycopg", "/psycopg"),
    ("redis client", "/redis/"),
    ("celery / kombu", "/kombu/"),
    ("celery / kombu", "/celery/"),
    ("channels / asgiref", "/channels"),
    ("channels / asgiref", "/asgiref/"),
    ("Django ORM", "/django/db/"),
    ("Django, other", "/django/"),
    ("countersign: approvals", "/approvals/"),
    ("countersign: agents", "/agents/"),
    ("countersign: audit", "/audit/"),
)


async def profile(bodies: Bodies, client: Any, n: int, top: int) -> None:
    """cProfile follows one thread: enable it inside the view's worker thread,
    around DRF's dispatch (authentication to the rendered answer). It counts
    that thread's CPU time, not wall time: waits on PostgreSQL and Redis, and
    other processes on a busy machine, do not show; the stage table has them."""
    from approvals.api import views

    profiler = cProfile.Profile(time.thread_time)
    dispatch = views.ActionListView.dispatch

    def profiled(*args: Any, **kwargs: Any) -> Any:
        profiler.enable()
        try:
            return dispatch(*args, **kwargs)
        finally:
            profiler.disable()

    with mock.patch.object(views.ActionListView, "dispatch", profiled):
        for _ in range(n):
            await bodies.post(client, API_PATH)
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"cProfile (thread CPU time) of the DRF view, {n} proposals: {total * 1000 / n:.2f} ms CPU a proposal")
    print("  own time by area:")
    for area, seconds in sorted(_by_area(stats).items(), key=lambda kv: -kv[1]):
        print(f"    {area:34} {seconds * 1000 / n:6.2f} ms  {seconds / total:5.1%}")
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
        print(f"  top {top} by {order}:")
        print("\n".join("    " + line for line in _stats_table(out.getvalue())))
    print()


def _by_area(stats: pstats.Stats) -> dict[str, float]:
    areas: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        area = next((label for label, fragment in AREAS if fragment in filename), None)
        if area is None:
            area = "C / builtins" if filename == "~" else "Python stdlib, other"
        areas[area] += tottime
    return areas


def _stats_table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    site = next((part for part in lines if "site-packages/" in part), "")
    site_prefix = site[: site.find("site-packages/") + len("site-packages/")].split()[-1] if site else "\0"
    return [line.replace(site_prefix, "").replace(str(ROOT) + "/", "") for line in lines[start:] if line.strip()]


# ---------------------------------------------------------------- per-request setup


def per_request_setup(samples: int = 100) -> None:
    """What uvicorn pays on every request and the test clients do not: under
    ASGI each request runs in a new thread and context, so it opens a new
    PostgreSQL connection (CONN_MAX_AGE cannot keep one) and a new Redis
    connection for the cache (the throttle)."""
    from django.conf import settings
    from django.core.cache.backends.redis import RedisCache
    from django.db import connection

    timings = []
    for _ in range(samples):
        connection.close()
        started = time.perf_counter()
        connection.ensure_connection()
        timings.append(time.perf_counter() - started)
    print(f"new PostgreSQL connection through Django: median {statistics.median(timings) * 1000:.2f} ms")

    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        RedisCache(settings.CACHES["default"]["LOCATION"], {}).get("bench_probe")
        timings.append(time.perf_counter() - started)
    print(f"new Redis cache client and its first GET: median {statistics.median(timings) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
