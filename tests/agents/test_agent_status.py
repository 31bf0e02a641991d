from __future__ import annotations

import pytest

from agents.models import AgentStatus
from agents.services import resume_agent, set_status, suspend_agent
from approvals.rules.lifecycle import Status
from audit.log import Actor
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_a_suspended_agent_is_blocked_and_resumes_with_a_reason(agent, lead, propose):
    suspend_agent(agent, actor=Actor.user(lead), reason="Refunds look wrong")
    blocked = propose()
    assert (blocked.status, blocked.verdict_code) == (Status.BLOCKED, "agent_suspended")
    resume_agent(agent, actor=Actor.user(lead), reason="Fixed in 1.1")
    assert propose().status == Status.PENDING
    events = AuditEvent.objects.filter(agent_id=agent.pk, verb__startswith="agent.").order_by("id")
    assert [(e.verb, e.after["reason"]) for e in events] == [
        ("agent.suspended", "Refunds look wrong"),
        ("agent.resumed", "Fixed in 1.1"),
    ]


@pytest.mark.parametrize("status", [AgentStatus.SUSPENDED, AgentStatus.ACTIVE, AgentStatus.RETIRED])
def test_every_status_change_needs_a_reason(agent, status):
    with pytest.raises(ValueError, match="needs a reason"):
        set_status(agent, status, actor=Actor.system(), reason="  ")


def test_a_retired_agent_stays_retired(agent):
    set_status(agent, AgentStatus.RETIRED, actor=Actor.system(), reason="Replaced by refund-bot-2")
    with pytest.raises(ValueError, match="stays retired"):
        resume_agent(agent, actor=Actor.system(), reason="oops")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.RETIRED
    assert AuditEvent.objects.filter(verb="agent.retired", agent_id=agent.pk).count() == 1
