"""Decision callbacks: a signed POST to the `callback_url` an agent gave with
its proposal, each time the action leaves `pending` (approved, rejected,
expired, cancelled) and each time its execution ends (succeeded, failed,
rolled back), so an agent can park its state and resume later without
holding a connection. The long poll stays; this is the other way to wait.

How it flows:

1. `url_error` vets the URL when the proposal comes in (through the API's
   ProposalSerializer, which the REST and MCP doors share): https, a host
   in CALLBACK_ALLOWED_HOSTS (plain http only when DEBUG). A bad URL is a
   400 and nothing is stored.
2. `announce`, called by `services.move` inside the transaction of the
   move, writes one `Callback` row (an outbox: the body frozen as the API
   shows the action at that moment) and queues `tasks.send_callback` after
   commit.
3. `attempt` claims the row (a conditional update, so a sweep and a queued
   retry never send it twice at once), POSTs it signed like the dispatch
   webhooks (`X-Countersign-Signature`, agents.signing.sign) with the
   SHA-256 of the key that made the proposal as the secret, and records the
   outcome on the row and as an audit event. A 5xx, a time-out or no
   connection is retried with exponential backoff up to
   CALLBACK_MAX_ATTEMPTS; a 4xx (or a redirect, not followed) is final.
4. `due` lists what the sweep (tasks.sweep_dispatches) re-queues: retries
   whose message was lost, and every retry on the embedded run, where
   tasks run in-process and cannot wait.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.signing import SIGNATURE_HEADER, sign
from approvals import enqueue
from approvals.models import Action, Callback, CallbackState
from approvals.representation import ActionSerializer
from approvals.rules.lifecycle import Status
from audit.log import Actor, record

log = logging.getLogger(__name__)

# The statuses an agent is told about: every way out of pending, and every end of an execution.
# (A rollback that fails puts the action back to succeeded: announced again, with its verb.)
ANNOUNCED = frozenset(
    {
        Status.APPROVED,
        Status.REJECTED,
        Status.EXPIRED,
        Status.CANCELLED,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.ROLLED_BACK,
    }
)
ERROR_TEXT_LIMIT = 500


# ---------------------------------------------------------------- the URL


def _host_allowed(host: str) -> bool:
    for allowed in settings.CALLBACK_ALLOWED_HOSTS:
        allowed = allowed.lower()
        if allowed.startswith("*.") and host.endswith(allowed[1:]):
            return True
        if host == allowed:
            return True
    return False


def url_error(url: str) -> str:
    """Why this gateway will not call `url` back; empty when it will."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return "Not a valid URL."
    schemes = ("https", "http") if settings.CALLBACK_ALLOW_HTTP else ("https",)
    if parts.scheme not in schemes:
        return "A callback URL must use https." if parts.scheme != "https" else "Not a valid URL."
    if not host:
        return "A callback URL needs a host."
    if parts.username or parts.password:
        return "A callback URL must not carry a user name or password."
    if not settings.CALLBACK_ALLOWED_HOSTS:
        return "This gateway makes no callbacks: its CALLBACK_ALLOWED_HOSTS is empty."
    if not _host_allowed(host):
        return f"{host} is not among the hosts this gateway calls back (CALLBACK_ALLOWED_HOSTS)."
    return ""


# ---------------------------------------------------------------- the outbox


def announce(action: Action, verb: str) -> Callback | None:
    """Inside the transaction of a move: queue the callback that tells the
    agent about the status the action just took, if it asked for callbacks."""
    if not action.callback_url or action.status not in ANNOUNCED:
        return None
    callback = Callback.objects.create(action=action, status=action.status, event=verb, body=_body(action, verb))
    # Robust: the move has committed; a broker that is down must not undo it. The sweep sends it later.
    enqueue.delay_on_commit("send_callback", callback.pk)
    return callback


def _body(action: Action, verb: str) -> dict[str, Any]:
    """The action as GET /api/v1/actions/<id>/ shows it at this moment, with what happened."""
    shown = json.loads(json.dumps(ActionSerializer(action).data, cls=DjangoJSONEncoder))
    shown["url"] = settings.SITE_URL.rstrip("/") + shown["url"]
    return {"event": "action.status", "verb": verb, "status": action.status, "action": shown}


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class Attempt:
    outcome: str  # delivered, retry, failed
    retry_at: datetime | None = None


def retry_delay(attempts: int) -> timedelta:
    """After the attempts-th failed call: base, 2 x base, 4 x base, ... capped."""
    base = settings.CALLBACK_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** (attempts - 1), settings.CALLBACK_RETRY_MAX_SECONDS))


def _lease() -> timedelta:
    # While one attempt is in flight, nobody else takes the row; past this, a lost attempt is due again.
    return timedelta(seconds=settings.CALLBACK_TIMEOUT_SECONDS + settings.DISPATCH_GRACE_SECONDS)


def _claim(callback_id: int, now: datetime) -> Callback | None:
    claimed = Callback.objects.filter(pk=callback_id, state=CallbackState.QUEUED, next_attempt_at__lte=now).update(
        attempts=F("attempts") + 1, next_attempt_at=now + _lease()
    )
    if not claimed:
        return None
    return Callback.objects.select_related("action__callback_key", "action__agent").get(pk=callback_id)


def attempt(callback_id: int, *, now: datetime | None = None) -> Attempt | None:
    """Make the next attempt of one callback if it is due; None when it is
    not (delivered, given up, not yet due, or another attempt holds it)."""
    now = now or timezone.now()
    callback = _claim(callback_id, now)
    if callback is None:
        return None
    action = callback.action
    if action.callback_key is None:
        return _record(callback, now, None, "The key that made the proposal is gone: nothing to sign with.", False)
    content = json.dumps(callback.body, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Countersign",
        # The same on every attempt: a receiver that keys on it acts once.
        "Idempotency-Key": f"callback-{callback.pk}",
        "X-Countersign-Attempt": str(callback.attempts),
        SIGNATURE_HEADER: sign(action.callback_key.key_hash, content),
    }
    try:
        response = _client().post(
            action.callback_url, content=content, headers=headers, timeout=settings.CALLBACK_TIMEOUT_SECONDS
        )
    except httpx.TransportError as error:  # time-outs included
        return _record(callback, now, None, f"Could not reach the callback URL: {error!r}", True)
    except httpx.InvalidURL as error:
        return _record(callback, now, None, f"Not a valid URL: {error}", False)
    if response.is_success:
        return _record(callback, now, response.status_code, "", False)
    refused = f"HTTP {response.status_code} from the callback URL"
    return _record(callback, now, response.status_code, refused, response.status_code >= 500)


@transaction.atomic
def _record(callback: Callback, now: datetime, http_status: int | None, error: str, retry: bool) -> Attempt:
    """Write what the attempt came to, on the row and in the audit trail."""
    if not error:
        state, outcome, retry_at = CallbackState.DELIVERED, "delivered", None
    elif retry and callback.attempts < settings.CALLBACK_MAX_ATTEMPTS:
        state, outcome, retry_at = CallbackState.QUEUED, "retry", timezone.now() + retry_delay(callback.attempts)
    else:
        state, outcome, retry_at = CallbackState.FAILED, "failed", None
    Callback.objects.filter(pk=callback.pk).update(
        state=state,
        last_http_status=http_status,
        last_error=error[:ERROR_TEXT_LIMIT],
        next_attempt_at=retry_at or now,
        finished_at=None if state == CallbackState.QUEUED else timezone.now(),
    )
    action = callback.action
    record(
        f"action.callback_{outcome}",
        action,
        actor=Actor.system("callbacks"),
        after={
            "callback": callback.pk,
            "status": callback.status,
            "attempt": callback.attempts,
            "http_status": http_status,
            "error": error[:ERROR_TEXT_LIMIT],
            "retry_in_seconds": retry_delay(callback.attempts).total_seconds() if retry_at else None,
        },
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    if outcome != "delivered":
        log.warning("Callback %s of action %s, attempt %s: %s", callback.pk, action.pk, callback.attempts, error)
    return Attempt(outcome, retry_at)


def due(now: datetime) -> list[int]:
    """Callbacks whose next attempt is past due by the grace period: a lost
    message, a killed worker, or any retry on the embedded run."""
    overdue = now - timedelta(seconds=settings.DISPATCH_GRACE_SECONDS)
    return list(
        Callback.objects.filter(state=CallbackState.QUEUED, next_attempt_at__lte=overdue)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )


@functools.cache
def _client() -> httpx.Client:
    # One per process, as approvals.dispatch.executors: no redirects, so a signed body never lands somewhere unplanned.
    return httpx.Client(follow_redirects=False)
