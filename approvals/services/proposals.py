"""A proposal: the payload checked, the policy asked, the action written with
its audit event in one transaction; and an agent's cancel of its own."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeGuard
from uuid import UUID

import jsonschema
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Col
from django.utils import timezone

from agents.models import Agent, AgentKey, Grant
from approvals import enqueue, live
from approvals.models import (
    Action,
    ActionType,
    GatewayState,
    Verdict,
)
from approvals.rules import amounts, policy, routing
from approvals.rules.lifecycle import Status
from approvals.services.moves import (
    AmountMismatch,
    IdempotencyConflict,
    InvalidPayload,
    dispatch_after_commit,
    locked,
    move,
    undo_window_end,
)
from audit.log import Actor, record, record_insert

INITIAL_STATUS = {
    Verdict.BLOCKED: Status.BLOCKED,
    Verdict.SHADOWED: Status.SHADOWED,
    Verdict.PENDING: Status.PENDING,
    Verdict.APPROVED: Status.APPROVED,
}


def payload_errors(action_type: ActionType, payload: Any) -> dict[str, list[str]]:
    """Field-level schema errors, keyed by the path into the payload ("" for the whole)."""
    validator = _validator(json.dumps(action_type.payload_schema or {}, sort_keys=True))
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.path)):
        path = ".".join(str(part) for part in error.absolute_path)
        errors.setdefault(path, []).append(error.message)
    return errors


@lru_cache(maxsize=256)
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    """One validator per schema (keyed by its text, so an edited schema gets its
    own): building one, and the references it resolves, costs more than validating."""
    return jsonschema.Draft202012Validator(json.loads(schema))


def money_of(action_type: ActionType, payload: Any) -> tuple[amounts.Money, dict[str, list[str]]]:
    """The amount and currency the payload carries where its action type says,
    and the errors (keyed like payload_errors) when it carries no valid one."""
    try:
        return action_type.money_in(payload), {}
    except amounts.AmountError as error:
        return amounts.Money(None), error.errors


def _merged(*errors: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for each in errors:
        for path, messages in each.items():
            merged.setdefault(path, []).extend(m for m in messages if m not in merged.get(path, []))
    return merged


def propose(
    agent: Agent,
    action_type: ActionType,
    *,
    payload: dict[str, Any],
    reasoning: str,
    confidence: Decimal | None = None,
    amount: Decimal | None = None,
    context: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    callback_url: str = "",
    callback_key: AgentKey | None = None,
) -> tuple[Action, bool]:
    """Record a proposal with the policy's verdict. Returns (action, created):
    with an idempotency key this agent already used for the same proposal
    (the same `fingerprint`), the earlier action and False, whatever else
    would be said of it now; for a different proposal, IdempotencyConflict.
    The earlier action is not looked for first: the unique constraint on
    (agent, idempotency_key) refuses the insert, and only then, or when the
    proposal is refused, is it read (`_earlier`).

    The amount is read from the payload (ActionType.amount_path); a declared
    `amount` must be the same, else AmountMismatch and nothing is stored.
    The policy rules first: a blocked proposal is stored (a safety signal)
    whatever its payload; any other must match the action type's schema and
    carry a valid amount where its type says (else InvalidPayload).
    `callback_url` (vetted by the caller with callbacks.url_error) is told
    of each later move; `callback_key`, the key that proposed, signs it.
    """
    money, amount_errors = money_of(action_type, payload)
    try:
        # Compared as decimals: 19.9 declared as a float is the payload's 19.90.
        if amount is not None and not amount_errors and Decimal(str(amount)) != money.amount:
            raise AmountMismatch(amount, money, action_type)
        with transaction.atomic():
            action = _record_proposal(
                agent,
                action_type,
                payload,
                reasoning,
                confidence,
                money,
                amount_errors,
                context or {},
                idempotency_key,
                fingerprint,
                callback_url=callback_url,
                callback_key=callback_key if callback_url else None,
            )
    except (IntegrityError, AmountMismatch, InvalidPayload):
        # The unique constraint on (agent, idempotency_key) refused a known key (a
        # replay, or another proposal under it); or a refused proposal may be a
        # replay of one accepted before (its action type has changed since).
        earlier = _earlier(agent, idempotency_key, fingerprint)
        if earlier is None:
            raise
        return earlier, False
    return action, True


def _earlier(agent: Agent, idempotency_key: str | None, fingerprint: str) -> Action | None:
    """Idempotency, in one place: the agent's earlier action under this key, if
    any. The same key for a different proposal (another fingerprint) is refused."""
    if idempotency_key is None:
        return None
    earlier = Action.objects.filter(agent=agent, idempotency_key=idempotency_key).first()
    if earlier is not None and earlier.request_fingerprint != fingerprint:
        raise IdempotencyConflict(earlier)
    return earlier


def _record_proposal(
    agent: Agent,
    action_type: ActionType,
    payload: dict[str, Any],
    reasoning: str,
    confidence: Decimal | None,
    money: amounts.Money,
    amount_errors: dict[str, list[str]],
    context: dict[str, Any],
    idempotency_key: str | None,
    fingerprint: str,
    **stored: Any,
) -> Action:
    amount = money.amount
    # Locking the grant serializes this agent's proposals of this type, so two
    # at once cannot both take the day's last slot. The gateway's pause and
    # the day's counters come with it, in the same round trip.
    grant, gateway_paused, counters = _locked_grant(agent, action_type)
    ruling = policy.decide(
        policy.Proposal(
            risk=action_type.risk,
            agent_status=agent.status,
            gateway_paused=gateway_paused,
            grant=_terms(grant),
            amount=amount,
            confidence=confidence,
            **counters,
        )
    )
    if ruling.verdict != Verdict.BLOCKED:
        errors = _merged(payload_errors(action_type, payload), amount_errors)
        if errors:
            raise InvalidPayload(errors)
    now = timezone.now()
    status = INITIAL_STATUS[Verdict(ruling.verdict)]
    department = routing.department_for(action_type, agent)
    waiting = status in (Status.PENDING, Status.SHADOWED)
    action = Action(
        agent=agent,
        action_type=action_type,
        grant=grant,
        department=department,
        status=status,
        payload=payload,
        reasoning=reasoning,
        confidence=confidence,
        amount=amount,
        currency=money.currency,
        context=context,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        verdict=ruling.verdict,
        verdict_code=ruling.code,
        verdict_reason=ruling.reason,
        created_at=now,
        # Urgency is set here, not by the routing task, so the row can be
        # pushed to the leads' screens the moment the proposal commits.
        priority=routing.priority(action_type.risk, amount) if waiting else 0,
        sla_deadline=routing.sla_deadline(now, department.decision_sla) if waiting else None,
        expires_at=now + timedelta(hours=action_type.expiry_hours) if status == Status.PENDING else None,
        decided_at=now if status == Status.APPROVED else None,
        dispatch_after=undo_window_end(action_type, now) if status == Status.APPROVED else None,
        **stored,
    )
    # The action and its event, in one statement on PostgreSQL.
    record_insert(
        "action.proposed",
        action,
        actor=Actor.agent(agent),
        after={
            "status": status,
            "verdict": ruling.verdict,
            "code": ruling.code,
            "reason": ruling.reason,
            "action_type": action_type.slug,
            "amount": None if amount is None else str(amount),
            "currency": money.currency,
        },
        department_id=action.department_id,
        agent_id=agent.pk,
    )
    _route_after_commit(action)
    return action


def _locked_grant(agent: Agent, action_type: ActionType) -> tuple[Grant | None, bool, dict[str, Any]]:
    """The grant, its row locked; whether the gateway is paused (False
    without a grant: it only matters when there is one); and what the agent
    already proposed under it today, when a daily limit needs it
    (_todays_counters).

    On PostgreSQL in one round trip: the lock and the count are two
    statements of one query. Under READ COMMITTED each statement takes its own
    snapshot as it starts, so the count, run once the lock is held, sees a
    proposal that committed while this one waited for it
    (tests/services/test_daily_limit_taken_once.py). Elsewhere (SQLite: no
    row locks, no statements sent together) the count is a query of its own.

    Written as SQL and read as a RawQuerySet reads a row (each column through
    its field's converters, then Model.from_db): it runs on every proposal,
    and the ORM's building of the query and the RawQuerySet's mapping of its
    columns cost more CPU than PostgreSQL spends on it."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once (audit.log.record_insert says why)
    # Django's psycopg cursors bind parameters on the client and send a query
    # as one string, which may hold two statements (not so with
    # server_side_binding, which settings.DATABASES does not set).
    together = db.vendor == "postgresql"
    sql, params = _LOCK_GRANT, [agent.pk, action_type.pk]
    if db.features.has_select_for_update_of:
        sql += " FOR UPDATE OF g"
    if together:
        count_sql, count_params = _same_day(agent.pk, action_type.pk, db)
        sql += f"; {count_sql} AND EXISTS ({_HAS_DAILY_LIMIT})"
        params += [*count_params, agent.pk, action_type.pk]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        counted = cursor.fetchone() if together and cursor.nextset() else None
    if row is None:
        return None, False, {}
    values = [
        _converted(value, column, converters, db)
        for value, (column, converters) in zip(row[:-1], _GRANT_READ, strict=True)
    ]
    grant = Grant.from_db(db.alias, _GRANT_ATTNAMES, values)
    if not _has_daily_limit(grant):
        counters = {}
    elif counted is None:  # not sent with the lock: a query of its own
        counters = _todays_counters(grant)
    else:
        counters = _counters(counted)
    # The gateway's pause is the extra column, last (0 or 1 on SQLite).
    return grant, bool(row[-1]), counters


def _converted(value: Any, column: Col, converters: list[Any], db: BaseDatabaseWrapper) -> Any:
    for convert in converters:
        value = convert(value, column, db)
    return value


_GRANT_FIELDS = Grant._meta.concrete_fields
_GRANT_ATTNAMES = [field.attname for field in _GRANT_FIELDS]
# Each column with its field's and the backend's converters, as the ORM reads it.
_GRANT_READ = [
    (column, connection.ops.get_db_converters(column) + column.get_db_converters(connection))
    for column in (field.get_col("g") for field in _GRANT_FIELDS)
]
_LOCK_GRANT = (
    f"SELECT {', '.join(f'g.{connection.ops.quote_name(str(field.column))}' for field in _GRANT_FIELDS)},"  # noqa: S608  (names only)
    f" COALESCE((SELECT s.paused FROM {GatewayState._meta.db_table} s WHERE s.id = 1), false)"
    f" FROM {Grant._meta.db_table} g WHERE g.agent_id = %s AND g.action_type_id = %s"
)


def _terms(grant: Grant | None) -> policy.GrantTerms | None:
    if grant is None:
        return None
    return policy.GrantTerms(
        tier=grant.tier,
        max_amount_per_action=grant.max_amount_per_action,
        max_actions_per_day=grant.max_actions_per_day,
        max_amount_per_day=grant.max_amount_per_day,
        auto_approve_max_amount=grant.auto_approve_max_amount,
        min_confidence=grant.min_confidence,
    )


def _todays_counters(grant: Grant | None, without: Action | None = None) -> dict[str, Any]:
    """What this agent already proposed under this grant today, counted only
    when the grant has a daily limit; blocked proposals use up nothing.

    `without`: an action being edited. Its day's counters, without itself
    (an action counts on the day it was proposed, with its current amount):
    today's, when it was proposed today.

    Written as SQL, as _locked_grant is, for the same reason; the amounts are
    summed in whole cents, exact on every backend (SQLite keeps a decimal
    column's values as floating point)."""
    if not _has_daily_limit(grant):
        return {}
    sql, params = _same_day(grant.agent_id, grant.action_type_id, connection, without)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return _counters(cursor.fetchone())


def _has_daily_limit(grant: Grant | None) -> TypeGuard[Grant]:
    return grant is not None and (grant.max_actions_per_day is not None or grant.max_amount_per_day is not None)


def _same_day(
    agent_id: int, action_type_id: int, db: BaseDatabaseWrapper, without: Action | None = None
) -> tuple[str, list[Any]]:
    """The count of _todays_counters: the day's proposals, or those of the
    day `without` was proposed on, without it."""
    day_of = timezone.localtime() if without is None else timezone.localtime(without.created_at)
    midnight = day_of.replace(hour=0, minute=0, second=0, microsecond=0)
    created_at, pk = Action._meta.get_field("created_at"), Action._meta.pk
    sql = _SAME_DAY
    params = [agent_id, action_type_id, created_at.get_db_prep_value(midnight, db), Status.BLOCKED]
    if without is not None:
        next_midnight = timezone.make_aware(datetime.combine(midnight.date() + timedelta(days=1), time.min))
        sql += " AND created_at < %s AND id <> %s"
        params += [created_at.get_db_prep_value(next_midnight, db), pk.get_db_prep_value(without.pk, db)]
    return sql, params


def _counters(row: tuple[int, int]) -> dict[str, Any]:
    count, cents = row
    # With the column's places, or a plain 0 for nothing (as Sum's None or 0.00 was read before).
    return {"actions_today": count, "amount_today": Decimal(cents).scaleb(-_CENTS) if cents else Decimal(0)}


_CENTS = Action._meta.get_field("amount").decimal_places
_SAME_DAY = (
    f"SELECT COUNT(*), COALESCE(SUM(CAST(ROUND(amount * {10**_CENTS}) AS BIGINT)), 0)"  # noqa: S608  (constants only)
    f" FROM {Action._meta.db_table}"
    " WHERE agent_id = %s AND action_type_id = %s AND created_at >= %s AND status <> %s"
)
# Sent with the lock: PostgreSQL skips the count (a one-time filter) for a grant without a daily limit.
_HAS_DAILY_LIMIT = (
    f"SELECT 1 FROM {Grant._meta.db_table} WHERE agent_id = %s AND action_type_id = %s"  # noqa: S608  (names only)
    " AND (max_actions_per_day IS NOT NULL OR max_amount_per_day IS NOT NULL)"
)


def _route_after_commit(action: Action) -> None:
    """A new proposal: on the leads' screens at once; a waiting one is then
    routed by a task (its audit event and the leads' emails). Through the
    agent API's door both go out just after the agent's answer, gathered
    with those of the proposals answered in the same 20 ms
    (approvals.after_answer.Gathering)."""
    action_id, department_id, status = action.pk, action.department_id, action.status
    # Robust, each on its own: the proposal has committed and its answer must
    # reach the agent. A screen that missed the push catches up when its
    # socket re-syncs; the sweep routes what is still unrouted
    # (approvals.services.sweep.unrouted) should the broker be down.
    transaction.on_commit(lambda: live.publish_action_proposed(action_id, department_id, status), robust=True)
    if status in (Status.PENDING, Status.SHADOWED):
        enqueue.gather_on_commit("route_actions", str(action_id))
    dispatch_after_commit(action)  # approved by the policy: dispatched when its undo window ends


@transaction.atomic
def route(action_id: UUID | str) -> Action | None:
    """The routing claim: record where a new waiting action went (the proposal
    chose its department, priority and SLA deadline) with its audit event.
    Routing runs at least once per proposal (a task, acks late), so only the
    run that sets `routed_at` records; it gets the action, any other None."""
    action = Action.objects.select_related("department").filter(pk=action_id).first()
    if action is None or action.status not in (Status.PENDING, Status.SHADOWED):
        return None
    # The status in the filter too: a lead may have decided it since it was read.
    claimed = Action.objects.filter(pk=action.pk, status=action.status, routed_at__isnull=True).update(
        routed_at=timezone.now()
    )
    if not claimed:
        return None
    record(
        "action.routed",
        action,
        actor=Actor.system("router"),
        after={
            "department": action.department.slug,
            "priority": action.priority,
            "sla_deadline": action.sla_deadline.isoformat() if action.sla_deadline else None,
        },
        department_id=action.department_id,
        agent_id=action.agent_id,
    )
    return action


@transaction.atomic
def cancel(action_id: UUID | str, agent: Agent) -> Action:
    action = locked(action_id)
    if action.agent_id != agent.pk:
        raise Action.DoesNotExist
    move(action, Status.CANCELLED, "action.cancelled", Actor.agent(agent))
    return action
