"""One approval-rate window everywhere: the department's promotion policy's.

The action page, the queue's preview pane, the agent list, the department
dashboard and the agent's own GET /api/v1/me/ all count the same decisions:
those of the last `window_days` of the agent's department, not a fixed month
and not another department's window."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.models import Action, PromotionPolicy
from tests.support.agent_side import key_for
from tests.support.factories import ActionTypeFactory, GrantFactory

pytestmark = pytest.mark.django_db

WINDOW_DAYS = 10


@pytest.fixture
def history(agent, lead, other_lead):
    """In the window: 3 approvals and 1 rejection. Before it (20 days ago): 2
    rejections, which a 30-day count would include. One action still waits."""
    PromotionPolicy.objects.create(department=agent.department, window_days=WINDOW_DAYS)
    PromotionPolicy.objects.update_or_create(department=None, defaults={"window_days": 30})
    refunds = ActionTypeFactory()
    GrantFactory(agent=agent, action_type=refunds, tier=Tier.CONTRIBUTOR)

    def proposed() -> Action:
        action, _ = services.propose(
            agent, refunds, payload={"note": "refund"}, reasoning="Asked.", confidence=Decimal("0.9")
        )
        return action

    for _ in range(3):
        services.approve(proposed().pk, lead)
    services.reject(proposed().pk, other_lead, reason="No.")
    old = [proposed() for _ in range(2)]
    for action in old:
        services.reject(action.pk, lead, reason="No.")
    Action.objects.filter(pk__in=[a.pk for a in old]).update(created_at=timezone.now() - timedelta(days=20))
    return proposed()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_pages_and_the_api_count_the_departments_window(client: Client, lead, agent, history):
    client.force_login(lead)

    action_page = text_of(client.get(f"/actions/{history.pk}/").content.decode())
    assert f"(3 of 4 decisions in the last {WINDOW_DAYS} days;" in action_page

    preview = text_of(client.get(f"/queue/preview/{history.pk}/").content.decode())
    assert f"75 % approved (3 of 4 decisions, {WINDOW_DAYS} days)" in preview

    agent_list = text_of(client.get("/agents/").content.decode())
    assert f"of 4 {WINDOW_DAYS} days" in agent_list

    dashboard = client.get(f"/departments/{agent.department.slug}/").content.decode()
    assert re.search(rf'id="decisions">4 <span class="muted">last {WINDOW_DAYS} days', dashboard)

    client.logout()
    me = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {key_for(agent)}").json()
    (grant,) = me["grants"]
    assert grant["approval_rate"] == {
        "window_days": WINDOW_DAYS,
        "decisions": 4,
        "approved": 3,
        "rate": pytest.approx(0.75),
    }
