"""Action types an agent makes known: the door behind POST /api/v1/action-types/.

An agent (the MCP proxy, on a tool's first call) may tell the gateway that an action type exists and what its
payload looks like. It never gains anything by it: the type is created agent-executed, routed to the agent's
department, at the model's default risk, and with no grant, so every proposal of it is blocked
(`not_granted`) until an admin grants it. An existing type is returned as it is and never changed by an
agent, whatever the request says. A suspended or retired agent registers nothing.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents.models import Agent, AgentStatus
from approvals.models import ActionType, Executor, validate_json_schema
from audit.log import Actor, record

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class NotActive(PermissionError):
    """A suspended or retired agent registers nothing."""


class InvalidActionType(ValueError):
    """The request cannot describe an action type; `fields` says why, per field."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items()))
        self.fields = fields


def register(
    agent: Agent, slug: str, payload_schema: dict[str, Any], *, name: str = "", description: str = ""
) -> tuple[ActionType, bool]:
    """The action type `slug`, and whether this call created it (audited as `action_type.registered`).
    NotActive for a suspended or retired agent; InvalidActionType for a bad slug or schema."""
    if agent.status != AgentStatus.ACTIVE:
        raise NotActive(f"The agent is {agent.status}; it may not register action types.")
    problems: dict[str, list[str]] = {}
    if not SLUG.match(slug):
        problems["slug"] = ["1 to 100 letters, digits, dots, dashes or underscores, starting with a letter or digit."]
    try:
        validate_json_schema(payload_schema)
    except ValidationError as invalid:
        problems["payload_schema"] = list(invalid.messages)
    if problems:
        raise InvalidActionType(problems)
    existing = ActionType.objects.filter(slug=slug).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            action_type = ActionType.objects.create(
                slug=slug,
                name=(name or slug)[:200],
                description=description,
                payload_schema=payload_schema,
                executor=Executor.AGENT,
                routing_department=agent.department,
            )
            record(
                "action_type.registered",
                action_type,
                actor=Actor.agent(agent),
                after={"slug": slug, "executor": Executor.AGENT, "payload_schema": payload_schema},
                department_id=agent.department_id,
                agent_id=agent.pk,
            )
    except IntegrityError:  # another request registered it first: theirs stands
        return ActionType.objects.get(slug=slug), False
    return action_type, True
