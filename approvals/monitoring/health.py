"""/healthz: is everything Countersign needs up? For load balancers and on-call.

Four checks, each answering ok or down with a detail in words: the
database (a query), Redis (a PING to REDIS_URL, when it is set), a Celery
worker and Celery beat (their heartbeats, approvals.monitoring.heartbeats, younger than
HEARTBEAT_MAX_AGE_SECONDS). 200 when all are ok, 503 when any is down.

Open to anyone, but only up or down: `{"status": "ok"}` or `{"status":
"down"}`. Which check failed and why (error texts, worker host names) is for
an admin's session or a request with "Authorization: Bearer <METRICS_TOKEN>",
the monitoring system's credential (approvals.monitoring.prometheus).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from approvals.models import Heartbeat
from approvals.monitoring import heartbeats
from approvals.monitoring.prometheus import has_metrics_token
from approvals.reach import is_admin

REDIS_TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        return Check(False, f"The database does not answer: {error}")
    return Check(True, "answers")


def redis_server() -> Check:
    if not settings.REDIS_URL:
        return Check(True, "not used (embedded run)")
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except redis.RedisError as error:
        return Check(False, f"Redis does not answer: {error}")
    finally:
        client.close()
    return Check(True, "answers")


def heartbeat(role: str, *, database_ok: bool) -> Check:
    if role == heartbeats.WORKER and settings.CELERY_TASK_ALWAYS_EAGER:
        return Check(True, "tasks run in-process (embedded run)")
    if not database_ok:
        return Check(False, "unknown: its heartbeat is kept in the database, which is down")
    last = Heartbeat.objects.filter(role=role).first()
    if last is None:
        return Check(False, f"no {role} has ever reported")
    age = timezone.now() - last.beat_at
    if age > timedelta(seconds=settings.HEARTBEAT_MAX_AGE_SECONDS):
        return Check(False, f"last heard from {age.total_seconds():.0f} s ago, on {last.host}")
    return Check(True, f"heard from {age.total_seconds():.0f} s ago, on {last.host}")


def checks() -> dict[str, Check]:
    db = database()
    return {
        "database": db,
        "redis": redis_server(),
        "worker": heartbeat(heartbeats.WORKER, database_ok=db.ok),
        "beat": heartbeat(heartbeats.BEAT, database_ok=db.ok),
    }


def may_see_details(request: HttpRequest) -> bool:
    # Not the metrics' address allow-list: behind a proxy on the same host
    # every visitor comes from 127.0.0.1.
    user = getattr(request, "user", None)
    return (user is not None and user.is_authenticated and is_admin(user)) or has_metrics_token(request)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    found = checks()
    healthy = all(check.ok for check in found.values())
    body: dict[str, object] = {"status": "ok" if healthy else "down"}
    if may_see_details(request):
        body["down"] = [name for name, check in found.items() if not check.ok]
        body["checks"] = {name: asdict(check) for name, check in found.items()}
    return JsonResponse(body, status=200 if healthy else 503)
