"""The grant's daily amount limit, end to end through the API: proposals
add up over the day, counted at the amount their payload carries; the one
that would take the day past the limit is refused (403 limit_exceeded, the
numbers in the message) and stored as blocked, using up nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.models import Agent, Tier
from approvals.models import Action
from tests.api.test_api_keys import api_client, assert_error, post_json
from tests.support.factories import GrantFactory
from tests.support.money import payment, payment_type

pytestmark = pytest.mark.django_db

ACTIONS = "/api/v1/actions/"


@pytest.fixture
def client(agent: Agent):
    GrantFactory(agent=agent, action_type=payment_type(), tier=Tier.CONTRIBUTOR, max_amount_per_day=Decimal("1000.00"))
    return api_client(agent)


def propose(client, moves: float, **fields):
    """Propose a payment whose payload moves `moves`; `fields` adds to the body (e.g. a declared amount)."""
    body = {"action_type": "payments.pay", "payload": payment(moves), "reasoning": "Invoices due today.", **fields}
    return post_json(client, ACTIONS, body)


def test_it_refuses_the_proposal_that_takes_the_day_past_the_limit(client):
    assert propose(client, 600).status_code == 201
    assert propose(client, 400).status_code == 201  # exactly at the limit

    error = assert_error(propose(client, 0.01), 403, "limit_exceeded")

    assert error["message"] == "today's total would be 1,000.01, over this grant's daily limit of 1,000.00"
    assert Action.objects.get(pk=error["action_id"]).status == "blocked"


def test_it_counts_the_payloads_amount_whatever_the_agent_declares(client):
    assert propose(client, 900, amount="900.00").status_code == 201

    # Declaring less than the payload carries is refused outright; leaving it out counts the payload's.
    assert_error(propose(client, 500, amount="0.00"), 400, "amount_mismatch")
    error = assert_error(propose(client, 500), 403, "limit_exceeded")
    assert "today's total would be 1,400.00" in error["message"]


def test_it_lets_refused_proposals_use_up_nothing(client):
    assert propose(client, 700).status_code == 201
    assert_error(propose(client, 400), 403, "limit_exceeded")

    assert propose(client, 300).status_code == 201  # the refused 400.00 was not counted


def test_it_starts_each_day_afresh(client, agent):
    first = propose(client, 1000).json()
    Action.objects.filter(pk=first["id"]).update(created_at=timezone.now() - timedelta(days=1))

    assert propose(client, 1000).status_code == 201
