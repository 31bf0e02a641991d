"""One small world for the reach tests: a department, its agent and one
action in each state a door acts on, seen from one role.

The roles are those of docs/access.md. Finance decides the agent's actions;
Sales is another department. The agent's owner depends on the role: a plain
owner, an owner who leads Sales, or an owner who leads Finance itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from agents.models import Agent, Grant, Tier
from approvals import services
from approvals.models import Action, Alert, Department
from approvals.monitoring import alerts
from approvals.notify import decision_links
from tests.support.factories import (
    ActionTypeFactory,
    AdminFactory,
    AgentFactory,
    DepartmentFactory,
    GrantFactory,
    UserFactory,
)

ROLES = (
    "lead",
    "other_lead",
    "backup_before",
    "backup_after",
    "owner",
    "owner_leading_elsewhere",
    "owner_leading_its_department",
    "admin",
    "anonymous",
)


@dataclass
class World:
    role: str
    user: Any  # None for anonymous
    lead: Any
    finance: Department
    agent: Agent
    grant: Grant
    pending: Action
    shadowed: Action
    vetoable: Action
    succeeded: Action
    alert: Alert
    approve_link: str = ""  # the lead's one-click approve link of `pending` (approvals/notify/decision_links.py)

    @property
    def ids(self) -> dict[str, Any]:
        return {
            "pending": self.pending.pk,
            "shadowed": self.shadowed.pk,
            "vetoable": self.vetoable.pk,
            "succeeded": self.succeeded.pk,
            "alert": self.alert.pk,
            "agent": self.agent.slug,
            "grant": self.grant.pk,
            "department": self.finance.slug,
            "approve_link": self.approve_link,
        }


def _propose(agent: Agent, tier: str, **type_fields: Any) -> tuple[Action, Grant]:
    action_type = ActionTypeFactory(**type_fields)
    grant = GrantFactory(agent=agent, action_type=action_type, tier=tier)
    action, _ = services.propose(
        agent, action_type, payload={"note": "hello"}, reasoning="The customer asked.", confidence=Decimal("0.95")
    )
    return action, grant


def build(role: str) -> World:
    lead = UserFactory(username="lena-lead")
    sales_lead = UserFactory(username="omar-lead")
    backup = UserFactory(username="bea-backup")
    owner = UserFactory(username="olga-owner")
    finance = DepartmentFactory(name="Finance", slug="finance", leads=[lead], backup_approvers=[backup])
    sales = DepartmentFactory(name="Sales", slug="sales", leads=[sales_lead])
    if role == "owner_leading_elsewhere":
        owner = UserFactory(username="oscar-owner-lead")
        sales.leads.add(owner)
    elif role == "owner_leading_its_department":
        owner = UserFactory(username="ophelia-owner-lead")
        finance.leads.add(owner)
    users = {
        "lead": lead,
        "other_lead": sales_lead,
        "backup_before": backup,
        "backup_after": backup,
        "owner": owner,
        "owner_leading_elsewhere": owner,
        "owner_leading_its_department": owner,
        "admin": AdminFactory(username="ada-admin") if role == "admin" else None,
        "anonymous": None,
    }
    agent = AgentFactory(
        slug="refund-bot", name="Refund Bot", owner=owner, department=finance, next_review_on=timezone.localdate()
    )
    Agent.objects.filter(pk=agent.pk).update(next_review_on=timezone.localdate() - timedelta(days=1))
    pending, grant = _propose(agent, Tier.CONTRIBUTOR)
    shadowed, _ = _propose(agent, Tier.OBSERVER)
    vetoable, _ = _propose(agent, Tier.EXECUTOR, undo_window_seconds=600)
    succeeded, _ = _propose(agent, Tier.CONTRIBUTOR)
    services.approve(succeeded.pk, lead)
    services.report_result(succeeded.pk, agent, succeeded=True, detail={"done": True}, undo={"refund_id": "R-1"})
    if role == "backup_after":
        Action.objects.filter(agent=agent).update(escalated_at=timezone.now())
    alert = alerts.raise_alert(
        "dispatch_errors",
        severity="warning",
        message="Refund Bot failed three times.",
        department=finance,
        agent=agent,
    )
    return World(
        role=role,
        user=users[role],
        lead=lead,
        finance=finance,
        agent=agent,
        grant=grant,
        pending=Action.objects.get(pk=pending.pk),
        shadowed=Action.objects.get(pk=shadowed.pk),
        vetoable=Action.objects.get(pk=vetoable.pk),
        succeeded=Action.objects.get(pk=succeeded.pk),
        alert=alert,
        approve_link=decision_links.path_of(decision_links.issue(pending, lead, decision_links.APPROVE)),
    )
