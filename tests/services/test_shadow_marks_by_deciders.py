"""Shadow marks are promotion evidence: only those who decide an action mark
it (approvals.reach), never its agent's owner, even one who leads its department."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Agent, Tier
from approvals import services
from approvals.models import Action, Decision
from tests.support.factories import DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shadowed(propose) -> Action:
    return propose(tier=Tier.OBSERVER)


def mark_through_the_page(user, action: Action) -> int:
    client = Client()
    client.force_login(user)
    return client.post(f"/actions/{action.pk}/shadow-mark/", {"mark": "approve"}).status_code


def test_a_lead_of_the_department_marks_a_shadowed_proposal(lead, shadowed):
    services.mark_shadow(shadowed.pk, lead, would_approve=True)
    assert Decision.objects.get(action=shadowed).user == lead


def test_an_owner_who_leads_the_department_may_not_mark_her_own_agents_proposals(department, agent, shadowed):
    owner_lead = UserFactory(username="ophelia-owner-lead")
    department.leads.add(owner_lead)
    Agent.objects.filter(pk=agent.pk).update(owner=owner_lead)

    with pytest.raises(services.DecisionRefused, match="You own this agent"):
        services.mark_shadow(shadowed.pk, owner_lead, would_approve=True)
    assert mark_through_the_page(owner_lead, shadowed) == 302  # the page shows the refusal
    assert not Decision.objects.filter(action=shadowed).exists()


def test_a_plain_owner_may_not_mark_either(owner, shadowed):
    with pytest.raises(services.DecisionRefused):
        services.mark_shadow(shadowed.pk, owner, would_approve=False)
    assert not Decision.objects.filter(action=shadowed).exists()


def test_a_backup_marks_only_after_escalation(department, shadowed):
    backup = UserFactory(username="bea-backup")
    department.backup_approvers.add(backup)
    with pytest.raises(services.DecisionRefused):
        services.mark_shadow(shadowed.pk, backup, would_approve=True)

    Action.objects.filter(pk=shadowed.pk).update(escalated_at=timezone.now())
    services.mark_shadow(shadowed.pk, backup, would_approve=True)
    assert Decision.objects.get(action=shadowed).user == backup


def test_a_lead_of_another_department_gets_a_404_and_marks_nothing(shadowed):
    stranger = UserFactory(username="sam-sales")
    DepartmentFactory(slug="sales", leads=[stranger])
    with pytest.raises(services.DecisionRefused):
        services.mark_shadow(shadowed.pk, stranger, would_approve=True)
    assert mark_through_the_page(stranger, shadowed) == 404
    assert not Decision.objects.filter(action=shadowed).exists()
