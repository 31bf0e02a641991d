from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest

from agents.models import Tier
from approvals import services
from approvals.models import Action, Risk
from tests.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory

# Playwright's sync API runs an event loop in the test thread; the tests'
# own ORM calls are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def lead(db):
    return UserFactory(username="lena-lead")


@pytest.fixture
def other_lead(db):
    return UserFactory(username="omar-lead")


@pytest.fixture
def owner(db):
    return UserFactory(username="olga-owner")


@pytest.fixture
def department(lead, other_lead):
    return DepartmentFactory(name="Finance", slug="finance", leads=[lead, other_lead])


@pytest.fixture
def agent(owner, department):
    return AgentFactory(slug="refund-bot", owner=owner, department=department)


@pytest.fixture
def propose(agent):
    """Propose through the service layer: propose(tier=..., risk=..., **fields) -> Action."""

    def _propose(tier: str = Tier.CONTRIBUTOR, risk: str = Risk.LOW, **fields: Any) -> Action:
        action_type = ActionTypeFactory(risk=risk)
        GrantFactory(agent=agent, action_type=action_type, tier=tier)
        fields.setdefault("payload", {"note": "hello"})
        fields.setdefault("reasoning", "The customer asked for it.")
        fields.setdefault("confidence", Decimal("0.95"))
        action, _ = services.propose(agent, action_type, **fields)
        return action

    return _propose
