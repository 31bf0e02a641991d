"""State changes: every change of an action's status happens in this package, and
only here, in one transaction with its audit event (approvals.services.moves).

By job: `proposals` (propose, cancel), `decisions` (approve, reject, veto, shadow
marks, expiry, escalation), `carry_out` (dispatch, reports, rollback),
`preferences`, `gateway` (the global pause), `control` (what a resume releases),
`action_types` (types an agent registers). Callers use the names below.
"""

from __future__ import annotations

from approvals.services.carry_out import (
    LOST,
    attempt_lost_after,
    finish_dispatch,
    finish_rollback,
    report_result,
    report_rollback,
    request_rollback,
    retry_dispatch,
    retry_later,
    start_dispatch,
    start_rollback,
    time_out_report,
    time_out_rollback,
    undo_of,
)
from approvals.services.decisions import approve, approvers_of, escalate, expire, mark_shadow, reject, veto
from approvals.services.moves import (
    AmountMismatch,
    DecisionRefused,
    EditRefused,
    IdempotencyConflict,
    InvalidPayload,
    PayloadChanged,
    may_decide,
)
from approvals.services.preferences import set_notification_mode
from approvals.services.proposals import INITIAL_STATUS, cancel, money_of, payload_errors, propose, route

__all__ = [
    "INITIAL_STATUS",
    "LOST",
    "AmountMismatch",
    "DecisionRefused",
    "EditRefused",
    "IdempotencyConflict",
    "InvalidPayload",
    "PayloadChanged",
    "approve",
    "approvers_of",
    "attempt_lost_after",
    "cancel",
    "escalate",
    "expire",
    "finish_dispatch",
    "finish_rollback",
    "mark_shadow",
    "may_decide",
    "money_of",
    "payload_errors",
    "propose",
    "reject",
    "report_result",
    "report_rollback",
    "request_rollback",
    "retry_dispatch",
    "retry_later",
    "route",
    "set_notification_mode",
    "start_dispatch",
    "start_rollback",
    "time_out_report",
    "time_out_rollback",
    "undo_of",
    "veto",
]
