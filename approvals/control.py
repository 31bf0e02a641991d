"""The kill switch for one agent: suspend it, resume it. (The whole
gateway's pause is approvals.gateway.set_paused.)

Within one second of the change committing, no new proposal is accepted (the
policy reads the agent's status and the pause at every proposal) and no
dispatch that has not started starts (approvals.services._held, read under the
action's lock when the dispatch is claimed). Work already approved is held,
not dropped: resume_agent re-queues it at once (requeue_held), and the sweep
would find it within seconds anyway, whoever resumed.

Resuming is an explicit act with a reason, like stopping; all of it is audited.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents import services as agent_services
from agents.models import Agent, AgentStatus
from approvals.lifecycle import Status
from approvals.models import Action, Executor
from audit.log import Actor


class ControlRefused(Exception):
    """This person may not do this; nothing changed."""


def may_suspend(user: Any, agent: Agent) -> bool:
    """Leads of the agent's department and admins stop and resume an agent."""
    return bool(user.is_superuser) or agent.department.leads.filter(pk=user.pk).exists()


def _reason(reason: str) -> str:
    if not reason.strip():
        raise ControlRefused("Say why: the reason is kept in the audit trail.")
    return reason.strip()


@transaction.atomic
def suspend_agent(agent: Agent, user: Any, *, reason: str) -> None:
    if not may_suspend(user, agent):
        raise ControlRefused("Only a lead of this agent's department or an admin may suspend it.")
    agent_services.suspend_agent(agent, actor=Actor.user(user), reason=_reason(reason))


@transaction.atomic
def resume_agent(agent: Agent, user: Any, *, reason: str) -> None:
    if not may_suspend(user, agent):
        raise ControlRefused("Only a lead of this agent's department or an admin may resume it.")
    agent_services.resume_agent(agent, actor=Actor.user(user), reason=_reason(reason))
    transaction.on_commit(lambda: requeue_held(agent_id=agent.pk), robust=True)


def requeue_held(*, agent_id: int | None = None) -> int:
    """Queue the dispatch of approved webhook actions the kill switch held
    (of one agent, or all); returns how many. Claims make extra ones harmless."""
    from approvals import tasks  # tasks import services; keep the cycle out of module load

    held = Action.objects.filter(
        status__in=[Status.APPROVED, Status.DISPATCHING],
        action_type__executor=Executor.WEBHOOK,
        agent__status=AgentStatus.ACTIVE,
    )
    if agent_id is not None:
        held = held.filter(agent_id=agent_id)
    due = list(held.values_list("pk", "dispatch_after")[:1000])
    for action_id, dispatch_after in due:
        tasks.enqueue_dispatch(str(action_id), dispatch_after)
    return len(due)
