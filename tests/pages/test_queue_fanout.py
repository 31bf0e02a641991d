"""The live queue's shared fan-out (approvals.pages.fanout): one read and one
render per change for all the sockets of a process, each lead still getting
their own row (their agent, their decision, their departments) and nothing
of a department they no longer decide for."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.models import Action, Risk
from approvals.pages.fanout import Viewer, updates_for
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db


def propose(agent, risk: str = Risk.LOW) -> Action:
    grant = GrantFactory(agent=agent, action_type=ActionTypeFactory(risk=risk), tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(agent, grant.action_type, payload={"note": "hi"}, reasoning="Asked for.")
    return action


def viewer(user, lane: str = "pending") -> Viewer:
    return Viewer(channel=f"channel-{user.username}-{lane}", user=user, lane=lane)


def row_of(html: str | None, action: Action) -> str | None:
    match = re.search(rf'<tr id="action-{action.pk}" class="row.*?</tr>', html or "", re.S)
    return match[0] if match else None


def test_it_reads_once_for_any_number_of_leads_of_a_department(department, agent, django_assert_max_num_queries):
    leads = [UserFactory(username=f"lead-{n}") for n in range(30)]
    department.leads.add(*leads)
    action = propose(agent)

    with django_assert_max_num_queries(6):
        updates = updates_for(str(action.pk), [viewer(lead) for lead in leads])

    assert len(updates) == 30
    assert all(row_of(html, action) for html in updates.values())
    assert len(set(updates.values())) == 1, "thirty leads in the same place share one rendering"


def test_it_gives_the_agents_owner_a_row_without_an_approve_button(department, lead, owner, agent):
    department.leads.add(owner)
    action = propose(agent)

    updates = updates_for(str(action.pk), [viewer(lead), viewer(owner)])

    assert "Your agent" in row_of(updates[viewer(owner).channel], action)
    lead_row = row_of(updates[viewer(lead).channel], action)
    assert "Your agent" not in lead_row and ">Approve</button>" in lead_row


def test_it_shows_each_lead_their_own_part_in_a_critical_action(department, lead, other_lead, agent):
    action = propose(agent, risk=Risk.CRITICAL)
    services.approve(action.pk, other_lead)

    updates = updates_for(str(action.pk), [viewer(lead), viewer(other_lead)])

    assert "1 of 2 approvals, one yours" in row_of(updates[viewer(other_lead).channel], action)
    mine = row_of(updates[viewer(lead).channel], action)
    assert "1 of 2 approvals" in mine and "one yours" not in mine
    assert ">Approve</button>" in mine


def test_it_counts_only_the_approvals_of_the_standing_payload(department, lead, other_lead, agent):
    action = propose(agent, risk=Risk.CRITICAL)
    services.approve(action.pk, lead)  # the proposal as it was
    services.approve(action.pk, other_lead, edited_payload={"note": "edited"})  # a new payload: its first approval

    updates = updates_for(str(action.pk), [viewer(lead), viewer(other_lead)])

    assert "1 of 2 approvals, one yours" in row_of(updates[viewer(other_lead).channel], action)
    # Lena's approval was of the old payload: she may approve the new one.
    hers = row_of(updates[viewer(lead).channel], action)
    assert "1 of 2 approvals" in hers and "one yours" not in hers
    assert ">Approve</button>" in hers


def test_it_sends_nothing_to_a_lead_removed_from_the_department_since_the_socket_opened(department, lead, agent):
    action = propose(agent)
    department.leads.remove(lead)

    assert updates_for(str(action.pk), [viewer(lead)]) == {viewer(lead).channel: None}


def test_it_shows_a_backup_only_an_escalated_action(department, agent):
    backup = UserFactory(username="bea-backup")
    department.backup_approvers.add(backup)
    action = propose(agent)

    quiet = updates_for(str(action.pk), [viewer(backup)])[viewer(backup).channel]
    assert row_of(quiet, action) is None and f'id="action-{action.pk}" data-gone' in quiet

    Action.objects.filter(pk=action.pk).update(sla_deadline=timezone.now() - timedelta(seconds=1))
    assert services.escalate(action.pk) is not None
    assert row_of(updates_for(str(action.pk), [viewer(backup)])[viewer(backup).channel], action)


def test_it_counts_per_set_of_departments(department, lead, agent):
    legal = DepartmentFactory(slug="legal", name="Legal")
    legal.leads.add(lead)
    propose(AgentFactory(slug="legal-bot", department=legal))
    finance_only = UserFactory(username="fin-only")
    department.leads.add(finance_only)
    action = propose(agent)

    updates = updates_for(str(action.pk), [viewer(lead), viewer(finance_only)])

    def pending(html: str) -> int:
        return int(re.search(r'<strong id="pending-count">(\d+)</strong>', html)[1])

    assert pending(updates[viewer(lead).channel]) == 2  # finance's and legal's
    assert pending(updates[viewer(finance_only).channel]) == 1


def test_it_puts_the_row_in_the_lane_of_each_socket(department, lead, agent):
    grant = GrantFactory(agent=agent, action_type=ActionTypeFactory(), tier=Tier.OBSERVER)
    action, _ = services.propose(agent, grant.action_type, payload={"note": "hi"}, reasoning="Shadow.")

    updates = updates_for(str(action.pk), [viewer(lead, "pending"), viewer(lead, "shadow")])

    assert 'hx-swap-oob="beforeend:#shadow-rows"' in updates[viewer(lead, "shadow").channel]
    assert row_of(updates[viewer(lead, "pending").channel], action) is None


def test_it_removes_a_deleted_action_quietly(lead):
    assert updates_for("00000000-0000-0000-0000-000000000000", [viewer(lead)]) == {viewer(lead).channel: None}
