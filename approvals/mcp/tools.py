"""An agent's granted action types as MCP tools, and back.

Names. A tool is named after its action type's slug, with every character
MCP hosts do not all accept in a tool name (anything but letters, digits,
`_` and `-`; several hosts refuse the `.` the MCP spec allows) turned into
`_`: `payments.refund` is the tool `payments_refund`. Should two slugs
come to the same name, each gets `_` and six hex digits of its slug's
SHA-256 appended, so a name never silently means another type.

Arguments. When the payload schema is a plain object schema whose
properties do not use the names below, the tool takes the payload's own
properties at its top level, next to `reasoning` (required), `confidence`,
`callback_url` and `idempotency_key`. Otherwise (a schema with `oneOf`, a
non-object payload, a property named like one of those) the payload goes
whole in a `payload` argument.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agents.models import Agent, Grant, Tier
from approvals.models import ActionType, Executor

CHECK_TOOL = "countersign_check_action"
RESERVED = ("reasoning", "confidence", "callback_url", "idempotency_key")
# The keywords a schema may use and still be flattened into the tool's own.
FLAT_KEYWORDS = {"type", "properties", "required", "additionalProperties", "title", "description", "$schema"}
DEFINITIONS = ("$defs", "definitions")
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]")

TIER_MEANS: dict[str, str] = {
    Tier.OBSERVER: "observer: calls are recorded for the leads and never carried out",
    Tier.CONTRIBUTOR: "contributor: every call waits for a lead's approval",
    Tier.EXECUTOR: "executor: calls within your limits are approved at once, others wait for a lead",
}

EXTRA_PROPERTIES: dict[str, Any] = {
    "reasoning": {"type": "string", "description": "Why you want this, for the lead who decides.", "minLength": 1},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "How sure you are, 0 to 1."},
    "callback_url": {
        "type": "string",
        "description": "Optional https URL told (signed POST) of the decision and of the outcome.",
    },
    "idempotency_key": {
        "type": "string",
        "maxLength": 255,
        "description": "Optional. A retry with the same key and arguments returns the first call's action.",
    },
}


def base_name(slug: str) -> str:
    return _NOT_IN_A_NAME.sub("_", slug)[:128]


def names_of(slugs: list[str]) -> dict[str, str]:
    """Tool name by slug. Depends on all the slugs known, so that a clash
    between two of them is settled the same way for every agent."""
    clashes = Counter(base_name(slug) for slug in slugs)
    clashes[CHECK_TOOL] += 1
    named = {}
    for slug in slugs:
        name = base_name(slug)
        if clashes[name] > 1:
            name = f"{name[:121]}_{hashlib.sha256(slug.encode()).hexdigest()[:6]}"
        named[slug] = name
    return named


def all_names() -> dict[str, str]:
    return names_of(list(ActionType.objects.values_list("slug", flat=True)))


def flattened(schema: dict[str, Any]) -> bool:
    """Whether the payload's properties can stand at the top of the tool's arguments."""
    if not isinstance(schema, dict) or set(schema) - FLAT_KEYWORDS - set(DEFINITIONS):
        return False
    if schema.get("type", "object") != "object":
        return False
    properties = schema.get("properties", {})
    return isinstance(properties, dict) and not set(properties) & set(RESERVED) and "payload" not in properties


def input_schema(action_type: ActionType) -> dict[str, Any]:
    schema = action_type.payload_schema or {}
    definitions = {key: schema[key] for key in DEFINITIONS if isinstance(schema, dict) and key in schema}
    if flattened(schema):
        tool: dict[str, Any] = {
            "type": "object",
            "properties": {**schema.get("properties", {}), **EXTRA_PROPERTIES},
            "required": [*schema.get("required", []), "reasoning"],
        }
        if "additionalProperties" in schema:
            tool["additionalProperties"] = schema["additionalProperties"]
    else:
        payload = {key: value for key, value in schema.items() if key not in (*DEFINITIONS, "$schema")}
        tool = {
            "type": "object",
            "properties": {"payload": payload or {"type": "object"}, **EXTRA_PROPERTIES},
            "required": ["payload", "reasoning"],
            "additionalProperties": False,
        }
    # References (#/$defs/...) resolve from the root, so the definitions move up to it.
    return {**tool, **definitions}


def description(grant: Grant) -> str:
    action_type = grant.action_type
    executor = (
        "Once approved, Countersign carries it out and this call returns the result."
        if action_type.executor == Executor.WEBHOOK
        else "Once approved, this call returns the approved (possibly edited) arguments: carry them out, "
        "then report the outcome (POST /api/v1/actions/<id>/result/)."
    )
    about = f" {action_type.description.strip()}" if action_type.description.strip() else ""
    return (
        f"{action_type.name}: a proposal of the action type {action_type.slug} to Countersign.{about} "
        f"Risk: {action_type.risk}. Your trust tier: {TIER_MEANS.get(grant.tier, grant.tier)}. {executor} "
        f"If no lead decides within the wait, the call returns status 'pending' with the action id: "
        f"ask {CHECK_TOOL} later."
    )


@dataclass(frozen=True)
class Granted:
    name: str
    grant: Grant


def granted(agent: Agent) -> list[Granted]:
    """The agent's grants as tools, by tool name; types without a grant are not there."""
    names = all_names()
    grants = Grant.objects.filter(agent=agent).select_related("action_type").order_by("action_type__slug")
    return [Granted(names[grant.action_type.slug], grant) for grant in grants]


def action_type_named(name: str) -> ActionType | None:
    """The action type a tool name stands for, granted or not (the policy refuses an ungranted one)."""
    for slug, tool_name in all_names().items():
        if tool_name == name:
            return ActionType.objects.select_related("routing_department").get(slug=slug)
    return None


def proposal_body(action_type: ActionType, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool's arguments as the body of POST /api/v1/actions/."""
    extra = {key: arguments[key] for key in RESERVED if key in arguments}
    if flattened(action_type.payload_schema or {}):
        payload = {key: value for key, value in arguments.items() if key not in RESERVED}
    else:
        unknown = sorted(set(arguments) - {"payload", *RESERVED})
        if unknown:
            # Refused by the serializer as the REST API refuses unknown fields.
            extra.update({key: arguments[key] for key in unknown})
        if "payload" not in arguments:
            return {"action_type": action_type.slug, **extra}
        payload = arguments["payload"]
    return {"action_type": action_type.slug, "payload": payload, **extra}
