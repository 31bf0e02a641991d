"""The signed-webhook executor: one HTTP call per attempt, and what it means.

A dispatch POSTs the approved action to its action type's webhook_url; a
rollback POSTs the stored `undo` object to its rollback_url. Both are signed
(X-Countersign-Signature, see agents.signing.sign) with the action type's
secret and carry an Idempotency-Key that stays the same across attempts, so
a receiver that keys its effects by it acts once however often it is called.
A dispatch sends exactly the payload that was approved, with its digest
(approvals.rules.digests) in the body and in X-Countersign-Payload-Digest; one
whose payload lacks the approvals its action type needs is not sent.

Pure I/O: this module changes no row. approvals.services records what an
attempt returned; approvals.tasks ties the two together.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from agents.signing import SIGNATURE_HEADER, sign
from approvals.models import APPROVING, Action, Execution, Verdict
from approvals.rules import digests

log = logging.getLogger(__name__)

RESPONSE_TEXT_LIMIT = 10_000  # characters of a non-JSON answer kept on the execution


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # for good: a 4xx, a redirect, or a body we cannot send
    RETRY = "retry"  # maybe later: 5xx, time-out, no connection


@dataclass(frozen=True)
class Delivery:
    """What one attempt came to."""

    outcome: Outcome
    response: Any = None
    error: str = ""
    undo: Any = None


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff after the attempt-th call failed: base, 2 x base, 4 x base, ... capped."""
    base = settings.DISPATCH_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** (attempt - 1), settings.DISPATCH_RETRY_MAX_SECONDS))


def dispatch_idempotency_key(action: Action) -> str:
    return str(action.pk)


def rollback_idempotency_key(action: Action) -> str:
    # Not the dispatch's key: to a receiver that keys effects by it, the
    # rollback would otherwise look like a repeat of the dispatch.
    return f"{action.pk}:rollback"


def _approvers_of(action: Action, digest: str) -> list[str]:
    """Who approved exactly the payload with this digest, in order."""
    decisions = action.decisions.filter(verdict__in=APPROVING, payload_digest=digest).select_related("user")
    return list(dict.fromkeys(decision.user.get_username() for decision in decisions))


def _unapproved(action: Action, digest: str, approvers: list[str]) -> str:
    """Why the payload about to be sent is not what was approved; empty when it is.
    The policy approves the proposal as it came; a human approval counts
    only for the exact payload (digest) it approved."""
    if action.verdict == Verdict.APPROVED and action.approved_payload is None:
        return ""
    need = action.action_type.approvals_required
    if len(approvers) >= need:
        return ""
    return f"Not sent: the payload to send (digest {digest}) has {len(approvers)} of the {need} approvals it needs."


def _dispatch_body(action: Action, digest: str, approvers: list[str]) -> dict[str, Any]:
    return {
        "event": "dispatch",
        "id": str(action.pk),
        "action_type": action.action_type.slug,
        "payload": action.effective_payload,
        "payload_digest": digest,
        "amount": None if action.amount is None else str(action.amount),
        "currency": action.currency,
        "agent": action.agent.slug,
        # Who approved this very payload; empty when the policy approved it (the agent's executor tier).
        "approved_by": approvers,
        "approved_at": action.decided_at.isoformat() if action.decided_at else None,
    }


def rollback_body(action: Action, undo: Any) -> dict[str, Any]:
    return {
        "event": "rollback",
        "id": str(action.pk),
        "action_type": action.action_type.slug,
        "agent": action.agent.slug,
        "undo": undo,
    }


def deliver(action: Action, execution: Execution) -> Delivery:
    """POST the approved action to its webhook, unless its payload lacks its approvals."""
    digest = action.standing_digest
    approvers = _approvers_of(action, digest)
    refusal = _unapproved(action, digest, approvers)
    if refusal:
        return Delivery(Outcome.FAILED, error=refusal)
    body = _dispatch_body(action, digest, approvers)
    return _post(
        action.action_type.webhook_url,
        body,
        action,
        execution,
        dispatch_idempotency_key(action),
        {digests.HEADER: digest},
    )


def roll_back(action: Action, execution: Execution, undo: Any) -> Delivery:
    """POST the stored undo object to the rollback URL."""
    url = action.action_type.rollback_url
    if not url:
        return Delivery(Outcome.FAILED, error="This action type has no rollback URL.")
    return _post(url, rollback_body(action, undo), action, execution, rollback_idempotency_key(action))


def _post(
    url: str,
    body: dict[str, Any],
    action: Action,
    execution: Execution,
    key: str,
    extra_headers: dict[str, str] | None = None,
) -> Delivery:
    action_type = action.action_type
    content = json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Countersign",
        "Idempotency-Key": key,
        "X-Countersign-Attempt": str(execution.attempt),
        SIGNATURE_HEADER: sign(action_type.webhook_secret, content),
        **(extra_headers or {}),
    }
    try:
        response = _client().post(url, content=content, headers=headers, timeout=action_type.webhook_timeout_seconds)
    except httpx.TimeoutException as error:
        return Delivery(Outcome.RETRY, error=f"No answer within {action_type.webhook_timeout_seconds} s ({error!r}).")
    except httpx.TransportError as error:
        return Delivery(Outcome.RETRY, error=f"Could not reach {url}: {error!r}")
    except httpx.InvalidURL as error:
        return Delivery(Outcome.FAILED, error=f"Not a valid URL: {error}")
    answer = _answer(response)
    if response.is_success:
        undo = answer["body"].get("undo") if isinstance(answer["body"], dict) else None
        return Delivery(Outcome.SUCCEEDED, response=answer, undo=undo)
    refused = f"HTTP {response.status_code} from {url}"
    if response.status_code >= 500:
        return Delivery(Outcome.RETRY, response=answer, error=refused)
    # 4xx: the target refuses this request as it is; sending it again would not help.
    # 3xx: redirects are not followed (see _client).
    return Delivery(Outcome.FAILED, response=answer, error=refused)


@functools.cache
def _client() -> httpx.Client:
    """One client per process: it keeps connections to targets alive, and
    building one (its TLS context) costs more than a call on loopback.
    Redirects are not followed, so a signed body never lands somewhere unplanned."""
    return httpx.Client(follow_redirects=False)


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The target's answer as kept on the execution: status and body (JSON if it is)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:RESPONSE_TEXT_LIMIT]
    return {"status": response.status_code, "body": body}
