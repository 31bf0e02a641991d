"""Writing audit events: the one door into the trail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from django.db import models, transaction

from audit import chain, context
from audit.models import ActorKind, AuditEvent
from audit.people import Person


class NamedAgent(Protocol):
    """What the trail reads of an agents.models.Agent; named, not imported, as agents
    sits above audit in the imports."""

    pk: Any
    slug: str


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str = ""
    label: str = ""

    @classmethod
    def user(cls, user: Person) -> Actor:
        return cls(ActorKind.USER, str(user.pk), user.get_username())

    @classmethod
    def agent(cls, agent: NamedAgent) -> Actor:
        return cls(ActorKind.AGENT, str(agent.pk), agent.slug)

    @classmethod
    def system(cls, label: str = "countersign") -> Actor:
        return cls(ActorKind.SYSTEM, "", label)


def record(
    verb: str,
    obj: models.Model | None,
    *,
    actor: Actor,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    department_id: int | None = None,
    agent_id: int | None = None,
) -> AuditEvent:
    """Append one event. Call it inside the transaction of the change it
    describes, so the change and its record commit or vanish together."""
    event = AuditEvent.objects.create(
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_label=actor.label,
        verb=verb,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_label=str(obj)[:200] if obj is not None else "",
        department_id=department_id,
        agent_id=agent_id,
        before=before,
        after=after,
        context=context.current(),
    )
    transaction.on_commit(chain.request_seal)
    return event
