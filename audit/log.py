"""Writing audit events: the one door into the trail."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import signals

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
    event = _event(verb, obj, actor, before, after, department_id, agent_id)
    event.save()
    transaction.on_commit(chain.request_seal)
    return event


def record_insert(
    verb: str,
    new: models.Model,
    *,
    actor: Actor,
    after: dict[str, Any] | None = None,
    department_id: int | None = None,
    agent_id: int | None = None,
) -> AuditEvent:
    """Insert the new row `new` (its primary key set already, as a UUID's
    default does) and append its event: `new.save()` then `record`, in one
    statement on PostgreSQL. For a hot path (every proposal): one round trip
    instead of two, and two INSERTs built once per process, not per call."""
    if new.pk is None:
        raise ValueError("record_insert names the row in its event before the insert: its key must be set.")
    event = _event(verb, new, actor, None, after, department_id, agent_id)
    # The thread's connection, looked up once: each of `connection`'s
    # attributes is a lookup of its own, and the fields read several each.
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or _heard(type(new)) or _heard(AuditEvent):
        new.save(force_insert=True)
        event.save()
    else:
        with db.cursor() as cursor:
            cursor.execute(
                f"WITH inserted AS ({_insert_sql(type(new))}) {_insert_sql(AuditEvent)} RETURNING id",
                _insert_params(new, db) + _insert_params(event, db),
            )
            event.pk = cursor.fetchone()[0]
        for saved in (new, event):
            saved._state.adding, saved._state.db = False, db.alias
    transaction.on_commit(chain.request_seal)
    return event


def _event(
    verb: str,
    obj: models.Model | None,
    actor: Actor,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    department_id: int | None,
    agent_id: int | None,
) -> AuditEvent:
    return AuditEvent(
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


# The INSERT a model's save() sends, built once: every column but an
# automatic primary key, each value prepared by its field as save() prepares
# it (pre_save fills auto_now and auto_now_add). It sends no signals, so a
# model with pre_save or post_save receivers is saved by save() instead.


def _heard(model: type[models.Model]) -> bool:
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


@cache
def _inserted_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.local_concrete_fields if f is not model._meta.auto_field]


@cache
def _insert_sql(model: type[models.Model]) -> str:
    fields = _inserted_fields(model)
    if any(f.has_db_default() or f.generated for f in fields):
        raise TypeError(f"{model._meta.label} has a column the database fills: save() it instead.")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(cast(str, f.column)) for f in fields)  # a concrete field has its column
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608  (names from the model)


def _insert_params(obj: models.Model, db: BaseDatabaseWrapper) -> list[Any]:
    return [f.get_db_prep_save(f.pre_save(obj, True), db) for f in _inserted_fields(type(obj))]
