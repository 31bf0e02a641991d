"""The action page's field-by-field view of a payload: what the agent
proposed, what stands approved (or for approval), who edited each field and
who approved the payload that carries it.

Approvals are bound to a payload digest (approvals.rules.digests): an approval of
an earlier payload, before someone edited it, no longer counts, and shows so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from approvals.models import APPROVING, Action, Decision, DecisionVerdict

ABSENT = object()


@dataclass(frozen=True)
class FieldRow:
    path: str
    proposed: str  # JSON text, "" when absent
    approved: str
    changed: bool
    edited_by: str  # who last changed this field, "" when nobody did
    executed: str = ""  # JSON text of what was carried out, "" while nothing was


@dataclass(frozen=True)
class PayloadReview:
    rows: list[FieldRow]
    digest: str  # of the standing payload
    approvers: list[str]  # of the standing payload
    stale: list[str]  # approved an earlier payload, which no longer stands
    executed: bool = False  # the standing payload was carried out (dispatched or reported)


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> value of each leaf of a JSON object (lists count as one value)."""
    if isinstance(value, dict) and (value or not prefix):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: value}


def review(action: Action, decisions: Iterable[Decision], executed: bool = False) -> PayloadReview:
    """Proposed → approved → executed, per field. `executed`: the standing
    payload went out (what a dispatch sends and an agent carries out is the
    standing payload, approved_payload or payload; executors.unapproved
    refuses any other)."""
    approvals = [d for d in decisions if d.verdict in APPROVING]
    standing: Any = action.payload
    edited_by: dict[str, str] = {}
    for decision in approvals:
        if decision.verdict == DecisionVerdict.EDIT_APPROVE and decision.edited_payload is not None:
            before, after = leaves(standing), leaves(decision.edited_payload)
            for path in before.keys() | after.keys():
                if before.get(path, ABSENT) != after.get(path, ABSENT):
                    edited_by[path] = decision.user.get_username()
            standing = decision.edited_payload
    digest = action.standing_digest
    proposed, approved = leaves(action.payload), leaves(action.effective_payload)
    paths = list(dict.fromkeys([*proposed, *approved]))
    rows = [
        FieldRow(
            path,
            _text(proposed.get(path, ABSENT)),
            _text(approved.get(path, ABSENT)),
            proposed.get(path, ABSENT) != approved.get(path, ABSENT),
            edited_by.get(path, ""),
            _text(approved.get(path, ABSENT)) if executed else "",
        )
        for path in paths
    ]
    current = [d.user.get_username() for d in approvals if d.payload_digest == digest]
    stale = [d.user.get_username() for d in approvals if d.payload_digest != digest]
    return PayloadReview(rows, digest, list(dict.fromkeys(current)), list(dict.fromkeys(stale)), executed)


def _text(value: Any) -> str:
    return "" if value is ABSENT else json.dumps(value, ensure_ascii=False)
