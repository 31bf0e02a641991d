"""The transaction: the grant locked, the policy asked, the action and its audit event written;
then what follows a commit."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from agents.authentication import LAST_USED_RESOLUTION
from approvals.api.proposals import fingerprint
from approvals.rules import amounts, policy, routing
from approvals.services.proposals import INITIAL_STATUS
from approvals.vocabulary import Status, Verdict
from bench.hand.answers import refuse_unless_earlier, replay, representation, row_answer
from bench.hand.body import Proposal
from bench.hand.errors import Refusal
from bench.hand.resources import ActionType, Caller, Resources

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the transaction

TOUCH = "UPDATE agents_agentkey SET last_used_at = %s WHERE id = %s AND (last_used_at IS NULL OR last_used_at <= %s)"
ROUTING_TASK = "approvals.tasks.route_action"
LOCK_GRANT = """
SELECT g.id, g.tier, g.max_amount_per_action, g.max_actions_per_day, g.max_amount_per_day,
       g.auto_approve_max_amount, g.min_confidence,
       COALESCE((SELECT paused FROM approvals_gatewaystate WHERE id = 1), false)
FROM agents_grant g
WHERE g.agent_id = %s AND g.action_type_id = %s
FOR UPDATE
"""
# Its own statement, after the lock: under READ COMMITTED it sees what the
# holder of the lock committed. The EXISTS is a one-time filter: no scan of
# the actions when the grant has no daily limit.
TODAYS_COUNTERS = """
SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM approvals_action
WHERE agent_id = %s AND action_type_id = %s AND created_at >= %s AND status <> 'blocked'
  AND EXISTS (SELECT 1 FROM agents_grant WHERE agent_id = %s AND action_type_id = %s
              AND (max_actions_per_day IS NOT NULL OR max_amount_per_day IS NOT NULL))
"""
INSERT_ACTION_AND_EVENT = """
WITH action AS (
    INSERT INTO approvals_action (
        id, agent_id, action_type_id, grant_id, department_id, status, payload, approved_payload, reasoning,
        confidence, amount, currency, context, idempotency_key, request_fingerprint, verdict, verdict_code,
        verdict_reason, priority, sla_deadline, routed_at, expires_at, escalated_at, dispatch_after, created_at,
        decided_at, updated_at, callback_url, callback_key_id)
    VALUES (%(id)s, %(agent_id)s, %(action_type_id)s, %(grant_id)s, %(department_id)s, %(status)s,
            %(payload)s::jsonb, NULL, %(reasoning)s, %(confidence)s, %(amount)s, %(currency)s, %(context)s::jsonb,
            %(idempotency_key)s, %(fingerprint)s, %(verdict)s, %(code)s, %(reason)s, %(priority)s,
            %(sla_deadline)s, NULL, %(expires_at)s, NULL, %(dispatch_after)s, %(now)s, %(decided_at)s, %(now)s,
            %(callback_url)s, %(callback_key_id)s)
    ON CONFLICT (agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
INSERT INTO audit_auditevent (
    seq, created_at, actor_kind, actor_id, actor_label, verb, object_type, object_id, object_label,
    department_id, agent_id, before, after, context, prev_hash, hash)
SELECT NULL, %(now)s, 'agent', %(actor_id)s, %(agent_slug)s, 'action.proposed', 'approvals.action', %(object_id)s,
       %(object_label)s, %(department_id)s, %(agent_id)s, NULL, %(after)s::jsonb, %(audit_context)s::jsonb, '', ''
FROM action
RETURNING id
"""


async def propose(
    res: Resources,
    conn: Any,
    scope: dict[str, Any],
    headers: dict[str, str],
    caller: Caller,
    action_type: ActionType,
    p: Proposal,
    body: dict[str, Any],
    now: datetime,
    touch: bool,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    if action_type.executor != "agent":
        raise Refusal(501, "not_implemented", "The hand-written intake takes agent-executed action types only.")
    request_fingerprint = fingerprint(body)
    try:
        money = amounts.read_money(
            p.payload, amount_path=action_type.amount_path, currency_path=action_type.currency_path,
            currency=action_type.currency,
        )  # fmt: skip
        amount_errors: dict[str, list[str]] = {}
    except amounts.AmountError as error:
        money, amount_errors = amounts.Money(None), error.errors
    if p.amount is not None and not amount_errors and p.amount != money.amount:
        await refuse_unless_earlier(conn, scope, headers, caller, p, request_fingerprint)
        raise Refusal(
            400,
            "amount_mismatch",
            mismatch_message(p.amount, money, action_type),
            fields={"amount": [mismatch_message(p.amount, money, action_type)]},
        )

    midnight = now.astimezone(res.zone).replace(hour=0, minute=0, second=0, microsecond=0)
    async with conn.pipeline():
        if touch:
            await conn.execute(TOUCH, (now, caller.key_id, now - LAST_USED_RESOLUTION))
        await conn.execute("BEGIN")
        grant_cursor = await conn.execute(LOCK_GRANT, (caller.agent_id, action_type.id))
        counters_cursor = await conn.execute(
            TODAYS_COUNTERS, (caller.agent_id, action_type.id, midnight, caller.agent_id, action_type.id)
        )
        grant = await grant_cursor.fetchone()
        counted = await counters_cursor.fetchone()
    limited = grant is not None and (grant[3] is not None or grant[4] is not None)
    ruling = policy.decide(
        policy.Proposal(
            risk=action_type.risk,
            agent_status=caller.agent_status,
            gateway_paused=grant is not None and grant[7],
            grant=None if grant is None else policy.GrantTerms(*grant[1:7]),
            amount=money.amount,
            confidence=p.confidence,
            **({"actions_today": counted[0], "amount_today": counted[1]} if limited else {}),
        )
    )
    if ruling.verdict != Verdict.BLOCKED:
        errors = merged(schema_errors(res.validator(action_type.schema_text), p.payload), amount_errors)
        if errors:
            await conn.execute("ROLLBACK")
            await refuse_unless_earlier(conn, scope, headers, caller, p, request_fingerprint)
            fields = {f"payload.{path}" if path else "payload": messages for path, messages in errors.items()}
            raise Refusal(400, "invalid", "The payload does not match the action type's schema.", fields=fields)

    row = new_row(caller, action_type, p, money, ruling, grant, now, request_fingerprint, scope, headers)
    async with conn.pipeline():
        inserted = await conn.execute(INSERT_ACTION_AND_EVENT, row)
        await conn.execute("COMMIT")
        created = await inserted.fetchone() is not None
    if not created:  # the unique constraint: this key was used before
        return await replay(conn, scope, headers, caller, p, request_fingerprint)
    await after_commit(res, row)
    answer = representation(scope, headers, row_answer(row, action_type))
    if ruling.verdict == Verdict.BLOCKED:
        refused = Refusal(403, ruling.code, ruling.reason, action_id=row["object_id"]).body()
        return 403, {**refused, "action": answer}, {}
    return 201, answer, {}


def mismatch_message(declared: Decimal, money: amounts.Money, action_type: ActionType) -> str:
    """As approvals.services.AmountMismatch words it."""
    if money.amount is None:
        return f"{action_type.slug} moves no money, yet the proposal declares an amount of {declared}."
    return (
        f"The declared amount {declared} differs from the payload's {money.amount} (at '{action_type.amount_path}'). "
        "The amount is read from the payload: leave it out, or send the same."
    )


def schema_errors(validator: Any, payload: Any) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.path)):
        errors.setdefault(".".join(str(part) for part in error.absolute_path), []).append(error.message)
    return errors


def merged(*errors: dict[str, list[str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for each in errors:
        for path, messages in each.items():
            result.setdefault(path, []).extend(m for m in messages if m not in result.get(path, []))
    return result


def new_row(
    caller: Caller,
    action_type: ActionType,
    p: Proposal,
    money: amounts.Money,
    ruling: policy.Ruling,
    grant: Any,
    now: datetime,
    request_fingerprint: str,
    scope: dict[str, Any],
    headers: dict[str, str],
) -> dict[str, Any]:
    status = INITIAL_STATUS[Verdict(ruling.verdict)]
    waiting = status in (Status.PENDING, Status.SHADOWED)
    department_id, sla_minutes = (
        (action_type.routing_department_id, action_type.routing_sla_minutes)
        if action_type.routing_department_id is not None
        else (caller.department_id, caller.department_sla_minutes)
    )
    approved = status == Status.APPROVED
    undo = action_type.reversible and action_type.undo_window_seconds
    action_id = uuid.uuid4()
    client = scope.get("client") or ("", 0)
    return {
        "id": action_id,
        "object_id": str(action_id),
        "agent_id": caller.agent_id,
        "actor_id": str(caller.agent_id),
        "agent_slug": caller.agent_slug,
        "action_type_id": action_type.id,
        "grant_id": None if grant is None else grant[0],
        "department_id": department_id,
        "status": status,
        "payload": json.dumps(p.payload),
        "payload_value": p.payload,
        "reasoning": p.reasoning,
        "confidence": p.confidence,
        "amount": money.amount,
        "currency": money.currency,
        "context": json.dumps(p.context),
        "context_value": p.context,
        "idempotency_key": p.idempotency_key,
        "fingerprint": request_fingerprint,
        "verdict": ruling.verdict,
        "code": ruling.code,
        "reason": ruling.reason,
        "priority": routing.priority(action_type.risk, money.amount) if waiting else 0,
        "sla_deadline": routing.sla_deadline(now, timedelta(minutes=sla_minutes)) if waiting else None,
        "expires_at": now + timedelta(hours=action_type.expiry_hours) if status == Status.PENDING else None,
        "decided_at": now if approved else None,
        "dispatch_after": (now + timedelta(seconds=action_type.undo_window_seconds) if undo else now)
        if approved
        else None,
        "now": now,
        "callback_url": p.callback_url,
        "callback_key_id": caller.key_id if p.callback_url else None,
        "object_label": f"{action_type.slug} by {caller.agent_slug} ({status})"[:200],
        "after": json.dumps(
            {
                "status": status,
                "verdict": ruling.verdict,
                "code": ruling.code,
                "reason": ruling.reason,
                "action_type": action_type.slug,
                "amount": None if money.amount is None else str(money.amount),
                "currency": money.currency,
            }
        ),
        "audit_context": json.dumps(
            {"ip": client[0], "user_agent": headers.get("user-agent", "")[:300], "key_prefix": caller.key_prefix}
        ),
    }


async def after_commit(res: Resources, row: dict[str, Any]) -> None:
    """The audit sealer woken, the routing task queued for a waiting action, the change published.
    Committed already: a failure here is logged, never the agent's error (as the API's robust on_commit)."""
    from audit.chain import request_seal

    request_seal()
    try:
        if row["status"] in (Status.PENDING, Status.SHADOWED):
            await res.redis.lpush(res.queue, routing_task_message(res, row["object_id"]))
        message = {
            "type": "action.changed",
            "event": uuid.uuid4().hex,
            "action_id": row["object_id"],
            "department_id": row["department_id"],
            "status": row["status"],
        }
        await res.channel_layer.group_send(f"department.{row['department_id']}", message)
    except Exception:
        log.exception("After the commit of action %s", row["object_id"])


def routing_task_message(res: Resources, action_id: str) -> str:
    """approvals.tasks.route_action.delay(action_id) as kombu's Redis transport
    puts it on the queue: Celery's message protocol 2, JSON, base64 body."""
    task_id = str(uuid.uuid4())
    body = json.dumps([[action_id], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    return json.dumps({
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": ROUTING_TASK, "id": task_id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": repr((action_id,)), "kwargsrepr": "{}", "origin": res.origin,
            "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": res.reply_to, "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": res.queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    })  # fmt: skip
