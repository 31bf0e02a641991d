"""An action as ActionSerializer shows it, and the earlier action an idempotency key names."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from approvals.vocabulary import Verdict
from bench.hand.body import Proposal
from bench.hand.errors import Answered, Refusal
from bench.hand.resources import ActionType, Caller

EARLIER = """
SELECT a.id, a.request_fingerprint, a.status, a.payload, a.approved_payload, a.reasoning, a.confidence, a.amount,
       a.context, a.idempotency_key, a.verdict, a.verdict_code, a.verdict_reason, a.created_at, a.decided_at,
       a.dispatch_after, a.expires_at, t.slug, t.executor,
       (SELECT COALESCE(json_agg(json_build_object('verdict', d.verdict, 'comment', d.comment,
                'decided_at', d.created_at, 'payload_digest', d.payload_digest) ORDER BY d.created_at, d.id), '[]')
        FROM approvals_decision d WHERE d.action_id = a.id),
       (SELECT COALESCE(json_agg(json_build_object('kind', e.kind, 'attempt', e.attempt, 'outcome', e.outcome,
                'started_at', e.started_at, 'finished_at', e.finished_at, 'error', e.error)
                ORDER BY e.started_at, e.id), '[]')
        FROM approvals_execution e WHERE e.action_id = a.id)
FROM approvals_action a JOIN approvals_actiontype t ON t.id = a.action_type_id
WHERE a.agent_id = %s AND a.idempotency_key = %s
"""


# ---------------------------------------------------------------- earlier actions and answers


async def earlier(conn: Any, caller: Caller, key: str | None) -> Any:
    if key is None:
        return None
    return await (await conn.execute(EARLIER, (caller.agent_id, key))).fetchone()


async def refuse_unless_earlier(
    conn: Any, scope: dict[str, Any], headers: dict[str, str], caller: Caller, p: Proposal, request_fingerprint: str
) -> None:
    """The API looks for the earlier action under this key before any other
    check: a replay or a conflict wins over the error found here."""
    found = await earlier(conn, caller, p.idempotency_key)
    if found is not None:
        status, answer, headers_out = earlier_answer(found, scope, headers, request_fingerprint)
        raise Answered(status, answer, headers_out)


async def replay(
    conn: Any, scope: dict[str, Any], headers: dict[str, str], caller: Caller, p: Proposal, request_fingerprint: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    found = await earlier(conn, caller, p.idempotency_key)
    return earlier_answer(found, scope, headers, request_fingerprint)


def earlier_answer(
    found: Any, scope: dict[str, Any], headers: dict[str, str], request_fingerprint: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    action_id = str(found[0])
    if found[1] != request_fingerprint:
        refusal = Refusal(
            409, "idempotency_conflict", "This idempotency key was used for a different proposal.", action_id=action_id
        )
        return 409, refusal.body(), {}
    answer = representation(scope, headers, {
        "id": action_id, "action_type": found[17], "executor": found[18], "status": found[2], "payload": found[3],
        "approved_payload": found[4], "reasoning": found[5], "confidence": found[6], "amount": found[7],
        "context": found[8], "idempotency_key": found[9],
        "policy": {"verdict": found[10], "code": found[11], "reason": found[12]},
        "decisions": [{**d, "decided_at": _drf_time(d["decided_at"])} for d in found[19]],
        "executions": [
            {**e, "started_at": _drf_time(e["started_at"]), "finished_at": _drf_time(e["finished_at"])}
            for e in found[20]
        ],
        "created_at": found[13], "decided_at": found[14], "dispatch_after": found[15], "expires_at": found[16],
    })  # fmt: skip
    if found[10] == Verdict.BLOCKED:
        refused = Refusal(403, found[11], found[12], action_id=action_id).body()
        return 403, {**refused, "action": answer}, {}
    return 200, answer, {}


def row_answer(row: dict[str, Any], action_type: ActionType) -> dict[str, Any]:
    return {
        "id": row["object_id"],
        "action_type": action_type.slug,
        "executor": action_type.executor,
        "status": row["status"],
        "payload": row["payload_value"],
        "approved_payload": None,
        "reasoning": row["reasoning"],
        "confidence": row["confidence"],
        "amount": row["amount"],
        "context": row["context_value"],
        "idempotency_key": row["idempotency_key"],
        "policy": {"verdict": row["verdict"], "code": row["code"], "reason": row["reason"]},
        "decisions": [],
        "executions": [],
        "created_at": row["now"],
        "decided_at": row["decided_at"],
        "dispatch_after": row["dispatch_after"],
        "expires_at": row["expires_at"],
    }


def representation(scope: dict[str, Any], headers: dict[str, str], action: dict[str, Any]) -> dict[str, Any]:
    """ActionSerializer's output: numbers and times as DRF renders them, the absolute URL last."""
    host = headers.get("host", "")
    return {
        **action,
        "confidence": None if action["confidence"] is None else float(action["confidence"]),
        "amount": None if action["amount"] is None else str(Decimal(action["amount"]).quantize(Decimal("0.01"))),
        "created_at": _drf_time(action["created_at"]),
        "decided_at": _drf_time(action["decided_at"]),
        "dispatch_after": _drf_time(action["dispatch_after"]),
        "expires_at": _drf_time(action["expires_at"]),
        "url": f"{scope.get('scheme', 'http')}://{host}/api/v1/actions/{action['id']}/",
    }


def _drf_time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # from json_agg: PostgreSQL's text form
        value = datetime.fromisoformat(value)
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
