"""The circuit breaker: an agent whose dispatches keep failing is suspended.

Each finished dispatch of an agent's action (a webhook's final outcome, an
agent's report, a missed report deadline) is counted here, in the
transaction that records it. A success resets the count; the promotion
policy's failure_limit (the agent's department's override, else the global
default) failures in a row suspend the agent. Suspension holds the rest of
its work (approvals.services.carry_out._held) until someone resumes it, with a reason,
which starts a fresh count (agents.services.set_status). Its owner and its
department's leads are emailed after commit.
"""

from __future__ import annotations

from django.db.models import F

from agents import services as agent_services
from agents.models import Agent
from approvals import enqueue
from approvals.models import PromotionPolicy
from audit.log import Actor


def count(agent_id: int, *, succeeded: bool, last: str) -> None:
    """Count one finished dispatch of agent `agent_id`'s; `last` names the
    action (its type and id) for the suspension's reason. Ids, not rows: the
    breaker needs nothing of the caller's objects."""
    agents = Agent.objects.filter(pk=agent_id)
    if succeeded:
        agents.filter(failed_dispatches_in_a_row__gt=0).update_unannounced(failed_dispatches_in_a_row=0)
        return
    # The update locks the agent's row until commit: two failures at once count as two.
    agents.update_unannounced(failed_dispatches_in_a_row=F("failed_dispatches_in_a_row") + 1)
    agent = Agent.objects.get(pk=agent_id)
    limit = PromotionPolicy.for_department(agent.department_id).failure_limit
    if agent.failed_dispatches_in_a_row < limit or not agent.is_active:
        return
    reason = (
        f"Circuit breaker: {agent.failed_dispatches_in_a_row} dispatches in a row failed (the limit is {limit}); "
        f"the last was {last}."
    )
    agent_services.suspend_agent(agent, actor=Actor.system("circuit breaker"), reason=reason)
    # Robust: the suspension stands even if the mail queue is down.
    enqueue.delay_on_commit("notify_circuit_broken", agent.pk, reason)
