"""Taking a proposal in: the one flow behind every agent door.

`POST /api/v1/actions/` (approvals.api.views) and an MCP `tools/call`
(approvals.mcp) both hand the body they received to `submit`: the same
validation (ProposalSerializer, callback URL included), the same
idempotency rules (a replay of the same key and body is the earlier action;
the same key with another body is a 409), the same service
(approvals.services.propose) and the same errors (ApiError, in the shape of
approvals.api.errors). The door only turns the outcome into its own answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from agents.models import Agent, AgentKey
from approvals import services
from approvals.api.errors import ApiError
from approvals.api.serializers import ProposalSerializer
from approvals.models import Action


@dataclass(frozen=True)
class Submitted:
    action: Action
    created: bool  # False: a replay of an earlier proposal with the same key and body


def fingerprint(body: dict[str, Any]) -> str:
    """The proposal as a stable hash, to tell a replay from a different body."""
    canonical = {k: v for k, v in body.items() if k != "idempotency_key"}
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def idempotency_key(in_body: str | None, in_header: str | None) -> str | None:
    if in_body and in_header and in_body != in_header:
        raise ApiError(
            400,
            "invalid",
            "The Idempotency-Key header and the body's idempotency_key differ.",
            fields={"idempotency_key": ["Differs from the Idempotency-Key header."]},
        )
    key = in_body or in_header
    if key is not None and not 0 < len(key) <= 255:
        raise ApiError(400, "invalid", "An idempotency key has 1 to 255 characters.")
    return key


def submit(agent: Agent, key: AgentKey | None, body: Any, *, header_key: str | None = None) -> Submitted:
    """Validate and propose `body` for `agent`, who authenticated with `key`.
    Raises ApiError or DRF's ValidationError (both rendered by approvals.api.errors)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid", "The body must be a JSON object.")
    proposal = ProposalSerializer(data=body)
    proposal.is_valid(raise_exception=True)
    data = proposal.validated_data
    idem = idempotency_key(data.pop("idempotency_key", None), header_key)
    try:
        action, created = services.propose(
            agent,
            data.pop("action_type"),
            idempotency_key=idem,
            fingerprint=fingerprint(body),
            callback_key=key,
            **data,
        )
    except services.InvalidPayload as invalid:
        fields = {f"payload.{path}" if path else "payload": messages for path, messages in invalid.errors.items()}
        raise ApiError(400, "invalid", str(invalid), fields=fields) from invalid
    except services.AmountMismatch as mismatch:
        raise ApiError(400, "amount_mismatch", str(mismatch), fields={"amount": [str(mismatch)]}) from mismatch
    except services.IdempotencyConflict as conflict:
        raise ApiError(409, "idempotency_conflict", str(conflict), action_id=str(conflict.earlier.pk)) from conflict
    return Submitted(action, created)
