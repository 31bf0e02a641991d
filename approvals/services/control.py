"""What the kill switch held goes when it is lifted.

While an agent is suspended, or the gateway paused, no dispatch that has not
started starts (approvals.services._held, read under the action's lock when
a dispatch is claimed): approved work is held, not dropped. Lifting the
switch re-queues it at once; the sweep would find it within seconds anyway,
whoever lifted it (the agent page, the admin, a script). The switches
themselves are agents.services.suspend_agent / resume_agent and
approvals.services.gateway.set_paused.
"""

from __future__ import annotations

from typing import Any

from agents.models import AgentStatus
from approvals import enqueue
from approvals.models import Action, Executor
from approvals.rules.lifecycle import Status

BATCH = 1000  # the sweep takes any rest


def requeue_held(*, agent_id: int | None = None) -> int:
    """Queue the dispatch of approved webhook actions the kill switch held
    (of one agent, or all); returns how many. Claims make extra ones harmless."""
    held = Action.objects.filter(
        status__in=[Status.APPROVED, Status.DISPATCHING],
        action_type__executor=Executor.WEBHOOK,
        agent__status=AgentStatus.ACTIVE,
    )
    if agent_id is not None:
        held = held.filter(agent_id=agent_id)
    due = list(held.values_list("pk", "dispatch_after")[:BATCH])
    for action_id, dispatch_after in due:
        enqueue.task("enqueue_dispatch")(str(action_id), dispatch_after)
    return len(due)


def requeue_on_resume(sender: Any, *, agent_id: int, **kwargs: Any) -> None:
    """Receiver of agents.signals.agent_resumed."""
    requeue_held(agent_id=agent_id)
