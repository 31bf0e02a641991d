"""The circuit breaker: an agent whose dispatches keep failing is suspended.

Each finished dispatch of an agent's action (a webhook's final outcome, an
agent's report, a missed report deadline) is counted here, in the
transaction that records it. A success resets the count; the promotion
policy's failure_limit (the agent's department's override, else the global
default) failures in a row suspend the agent. Suspension holds the rest of
its work (approvals.services._held) until someone resumes it, with a reason,
which starts a fresh count (agents.services.set_status). Its owner and its
department's leads are emailed after commit.
"""

from __future__ import annotations

from django.db.models import F

from agents import services as agent_services
from agents.models import Agent
from approvals import enqueue
from approvals.models import Action, PromotionPolicy
from audit.log import Actor


def count(action: Action, *, succeeded: bool) -> None:
    agents = Agent.objects.filter(pk=action.agent_id)
    if succeeded:
        agents.filter(failed_dispatches_in_a_row__gt=0).update(failed_dispatches_in_a_row=0)
        return
    # The update locks the agent's row until commit: two failures at once count as two.
    agents.update(failed_dispatches_in_a_row=F("failed_dispatches_in_a_row") + 1)
    agent = Agent.objects.select_related("department").get(pk=action.agent_id)
    limit = PromotionPolicy.for_department(agent.department).failure_limit
    if agent.failed_dispatches_in_a_row < limit or not agent.is_active:
        return
    reason = (
        f"Circuit breaker: {agent.failed_dispatches_in_a_row} dispatches in a row failed (the limit is {limit}); "
        f"the last was {action.action_type.slug} {action.pk}."
    )
    agent_services.suspend_agent(agent, actor=Actor.system("circuit breaker"), reason=reason)
    # Robust: the suspension stands even if the mail queue is down.
    enqueue.delay_on_commit("notify_circuit_broken", agent.pk, reason)
