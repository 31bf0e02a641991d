"""Changes to agents and their keys, each with its audit event."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from agents.models import Agent, AgentKey, AgentStatus, hash_key
from agents.signals import agent_resumed
from audit.log import Actor, record
from audit.models import ActorKind


@transaction.atomic
def issue_key(
    agent: Agent, *, actor: Actor, label: str = "", expires_at: datetime | None = None
) -> tuple[AgentKey, str]:
    """Create a key and return it with the raw secret, which is never stored
    and cannot be shown again."""
    raw, prefix = AgentKey.generate()
    key = AgentKey.objects.create(
        agent=agent, label=label, prefix=prefix, key_hash=hash_key(raw), expires_at=expires_at
    )
    record(
        "agent_key.issued",
        key,
        actor=actor,
        after={"prefix": prefix, "label": label, "expires_at": expires_at.isoformat() if expires_at else None},
        department_id=agent.department_id,
        agent_id=agent.pk,
    )
    return key, raw


@transaction.atomic
def revoke_key(key: AgentKey, *, actor: Actor) -> None:
    if key.revoked_at is not None:
        return
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    record(
        "agent_key.revoked",
        key,
        actor=actor,
        after={"prefix": key.prefix},
        department_id=key.agent.department_id,
        agent_id=key.agent_id,
    )


STATUS_VERBS = {
    AgentStatus.SUSPENDED: "agent.suspended",
    AgentStatus.ACTIVE: "agent.resumed",
    AgentStatus.RETIRED: "agent.retired",
}


@transaction.atomic
def set_status(agent: Agent, status: str, *, actor: Actor, reason: str) -> None:
    """Suspend, resume or retire an agent: an explicit act with a reason.
    Suspended and retired agents' proposals are blocked and nothing of theirs
    is dispatched; a retired agent stays retired."""
    if not reason.strip():
        raise ValueError("Changing an agent's status needs a reason.")
    locked = Agent.objects.select_for_update().get(pk=agent.pk)
    before = locked.status
    if before == status:
        return
    if before == AgentStatus.RETIRED:
        raise ValueError("A retired agent stays retired; register a new agent instead.")
    # Resuming starts the circuit breaker's count afresh (approvals.dispatch.breaker).
    fresh = {"failed_dispatches_in_a_row": 0} if status == AgentStatus.ACTIVE else {}
    # Who suspended it decides who may lift it (approvals.reach: an owner only their own suspension).
    suspended_by = int(actor.id) if status == AgentStatus.SUSPENDED and actor.kind == ActorKind.USER else None
    Agent.objects.filter(pk=agent.pk).update(status=status, suspended_by_id=suspended_by, **fresh)
    agent.status, agent.suspended_by_id = status, suspended_by
    if status == AgentStatus.ACTIVE:
        agent_id = agent.pk
        transaction.on_commit(lambda: agent_resumed.send(sender=Agent, agent_id=agent_id), robust=True)
    record(
        STATUS_VERBS[AgentStatus(status)],
        agent,
        actor=actor,
        before={"status": before},
        after={"status": status, "reason": reason},
        department_id=agent.department_id,
        agent_id=agent.pk,
    )


def suspend_agent(agent: Agent, *, actor: Actor, reason: str) -> None:
    set_status(agent, AgentStatus.SUSPENDED, actor=actor, reason=reason)


def resume_agent(agent: Agent, *, actor: Actor, reason: str) -> None:
    set_status(agent, AgentStatus.ACTIVE, actor=actor, reason=reason)
