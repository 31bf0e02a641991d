"""The ASGI app: authenticate, throttle and parse, in DRF's order, then propose (bench/hand/store.py)."""

from __future__ import annotations

import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from agents.authentication import LAST_USED_RESOLUTION, PREFIX_LENGTH
from agents.models import KEY_TYPE_PREFIX, hash_key
from approvals.api.throttle import Window
from bench.hand.body import Proposal
from bench.hand.errors import Refusal
from bench.hand.resources import ActionType, Caller, Resources, resources
from bench.hand.store import propose

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the ASGI app


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["method"] != "POST":
        await respond(
            send, 405, {"error": {"code": "method_not_allowed", "message": f'Method "{scope["method"]}" not allowed.'}}
        )
        return
    body = await read_body(receive)
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    try:
        status, answer, extra_headers = await intake(await resources(), scope, headers, body)
    except Refusal as refusal:
        status, answer, extra_headers = refusal.status, refusal.body(), refusal.headers
    await respond(send, status, answer, extra_headers)


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Any, status: int, answer: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    content = json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": content})


# ---------------------------------------------------------------- the intake

LOOKUP = """
SELECT k.id, k.key_hash, k.expires_at, k.revoked_at, k.last_used_at,
       a.id, a.slug, a.status, a.department_id, d.decision_sla_minutes,
       t.id, t.slug, t.risk, t.payload_schema::text, t.amount_path, t.currency_path, t.currency, t.executor,
       t.reversible, t.undo_window_seconds, t.expiry_hours, t.routing_department_id, rd.decision_sla_minutes
FROM agents_agentkey k
JOIN agents_agent a ON a.id = k.agent_id
JOIN approvals_department d ON d.id = a.department_id
LEFT JOIN approvals_actiontype t ON t.slug = %s
LEFT JOIN approvals_department rd ON rd.id = t.routing_department_id
WHERE k.prefix = %s
ORDER BY k.created_at DESC
LIMIT 1
"""


async def intake(
    res: Resources, scope: dict[str, Any], headers: dict[str, str], raw_body: bytes
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """In DRF's order: authenticate, throttle, parse, validate, then propose."""
    raw_key = bearer_key(headers.get("authorization", ""))
    parsed, parse_error = parse_body(headers, raw_body)
    slug = parsed.get("action_type") if isinstance(parsed, dict) else None
    now = datetime.now(UTC)
    async with res.pool.connection() as conn:
        caller, action_type, last_used_at = await authenticate(
            conn, raw_key, slug if isinstance(slug, str) else None, now
        )
        await throttle(res, caller.agent_id)
        if parse_error is not None:
            raise parse_error
        proposal = Proposal.from_body(parsed, headers.get("idempotency-key"), action_type)
        touch = last_used_at is None or last_used_at <= now - LAST_USED_RESOLUTION
        return await propose(res, conn, scope, headers, caller, action_type, proposal, parsed, now, touch)


def bearer_key(header: str) -> str:
    if not header:
        raise Refusal(
            401, "unauthorized", "Authentication credentials were not provided.", {"WWW-Authenticate": "Bearer"}
        )
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Refusal(
            401, "unauthorized", "Send the agent key as 'Authorization: Bearer <key>'.", {"WWW-Authenticate": "Bearer"}
        )
    return raw.strip()


def parse_body(headers: dict[str, str], raw: bytes) -> tuple[Any, Refusal | None]:
    media_type = headers.get("content-type", "").split(";")[0].strip()
    if media_type != "application/json":
        return None, Refusal(415, "unsupported_media_type", f'Unsupported media type "{media_type}" in request.')
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if len(raw) > limit:
        return None, Refusal(413, "payload_too_large", f"The request body is over {limit // 1024} KiB.")
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError) as error:
        return None, Refusal(400, "malformed_json", f"JSON parse error - {error}")


async def authenticate(
    conn: Any, raw_key: str, slug: str | None, now: datetime
) -> tuple[Caller, ActionType | None, datetime | None]:
    wrong = Refusal(401, "unauthorized", "This agent key is wrong, expired or revoked.", {"WWW-Authenticate": "Bearer"})
    if not raw_key.startswith(KEY_TYPE_PREFIX) or len(raw_key) <= PREFIX_LENGTH:
        raise wrong
    row = await (await conn.execute(LOOKUP, (slug, raw_key[:PREFIX_LENGTH]))).fetchone()
    if row is None or not hmac.compare_digest(row[1], hash_key(raw_key)):
        raise wrong
    expires_at, revoked_at = row[2], row[3]
    if revoked_at is not None or (expires_at is not None and expires_at <= now):
        raise wrong
    caller = Caller(row[0], raw_key[:PREFIX_LENGTH], row[5], row[6], row[7], row[8], row[9])
    action_type = ActionType(*row[10:23]) if row[10] is not None else None
    return caller, action_type, row[4]


async def throttle(res: Resources, agent_id: int) -> None:
    rate = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["agent"]
    window = Window.at(time.time(), rate)
    key = f"{res.cache_prefix}:1:throttle_agent_{agent_id}_{window.number}"
    previous_key = f"{res.cache_prefix}:1:throttle_agent_{agent_id}_{window.number - 1}"
    try:
        current, previous = await res.count_script(keys=[key, previous_key], args=[2 * window.period + 1])
    except Exception:  # fail open, as approvals.api.throttle does
        log.warning("Rate limit not applied: the cache does not answer", exc_info=True)
        return
    previous, current = int(previous), int(current)
    if window.estimate(previous, current) > window.limit:
        wait = window.seconds_until_allowed(previous, current)
        unit = "second" if wait == 1 else "seconds"
        raise Refusal(
            429, "throttled", f"Request was throttled. Expected available in {wait} {unit}.", {"Retry-After": str(wait)}
        )
