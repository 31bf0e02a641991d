"""The amount comes from the payload, never from the agent's word: through
the API, a declared amount must be the one the payload carries, a money type
without a valid amount in its payload is a field error, and every limit
(auto-approve included) is checked against the amount read from the payload."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agents.models import Agent, Tier
from approvals.models import Action
from approvals.rules import amounts
from tests.api.test_api_keys import api_client, assert_error, post_json
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.money import payment, payment_type

pytestmark = pytest.mark.django_db

ACTIONS = "/api/v1/actions/"


def proposal(payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"action_type": "payments.pay", "payload": payload, "reasoning": "Invoice 77 is due.", **fields}


@pytest.fixture
def executor(agent: Agent) -> Agent:
    """An executor-tier grant: auto-approved up to 100.00, at most 2,000.00 an action."""
    GrantFactory(
        agent=agent,
        action_type=payment_type(),
        tier=Tier.EXECUTOR,
        auto_approve_max_amount=Decimal("100.00"),
        max_amount_per_action=Decimal("2000.00"),
        min_confidence=Decimal("0.5"),
    )
    return agent


def test_it_refuses_a_declared_zero_when_the_payload_moves_999999(executor):
    response = post_json(api_client(executor), ACTIONS, proposal(payment(999999), amount="0", confidence=0.99))

    error = assert_error(response, 400, "amount_mismatch")
    assert "0" in error["message"] and "999999.00" in error["message"]
    assert set(error["fields"]) == {"amount"}
    assert not Action.objects.exists()


def test_it_holds_an_undeclared_amount_over_the_auto_approve_limit_for_a_human(executor):
    response = post_json(api_client(executor), ACTIONS, proposal(payment(999.5), confidence=0.99))

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["amount"]) == ("pending", "999.50")
    assert body["policy"]["code"] == "needs_review"
    assert body["policy"]["reason"] == (
        "amount 999.50 is over this grant's auto-approve limit of 100.00: a human decides"
    )


def test_it_blocks_an_undeclared_amount_over_the_per_action_limit(executor):
    response = post_json(api_client(executor), ACTIONS, proposal(payment(999999), confidence=0.99))

    error = assert_error(response, 403, "limit_exceeded")
    assert error["message"] == "amount 999,999.00 is over this grant's limit of 2,000.00 per action"
    assert Action.objects.get().amount == Decimal("999999.00")


def test_it_auto_approves_within_the_limits_with_or_without_the_same_declared_amount(executor):
    client = api_client(executor)
    declared = post_json(client, ACTIONS, proposal(payment(45.5), amount="45.50", confidence=0.99)).json()
    undeclared = post_json(client, ACTIONS, proposal(payment(45.5), confidence=0.99)).json()

    assert (declared["status"], declared["amount"]) == ("approved", "45.50")
    assert (undeclared["status"], undeclared["amount"]) == ("approved", "45.50")
    assert Action.objects.get(pk=declared["id"]).currency == "EUR"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"account": "DE89", "currency": "EUR"}, "payload.amount"),
        (payment("lots"), "payload.amount"),
        (payment(True), "payload.amount"),
        (payment(12.345), "payload.amount"),
        ({**payment(10), "currency": "euro"}, "payload.currency"),
    ],
    ids=["missing", "not a number", "a boolean", "three decimals", "no currency code"],
)
def test_it_refuses_a_money_type_whose_payload_lacks_a_valid_amount(executor, payload, field):
    response = post_json(api_client(executor), ACTIONS, proposal(payload, confidence=0.99))

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"]
    assert not Action.objects.exists()


def test_it_refuses_an_amount_declared_for_a_type_that_moves_no_money(agent):
    GrantFactory(agent=agent, action_type=ActionTypeFactory(slug="crm.touch"), tier=Tier.EXECUTOR)
    body = {"action_type": "crm.touch", "payload": {"note": "hi"}, "reasoning": "Asked.", "amount": "0.00"}

    error = assert_error(post_json(api_client(agent), ACTIONS, body), 400, "amount_mismatch")

    assert "moves no money" in error["message"]


def test_it_reads_the_amount_and_currency_at_nested_paths_or_a_fixed_currency():
    refund = {"refund": {"amount": "12.50", "currency": "GBP"}, "lines": [{"amount": 3}]}
    assert amounts.read_money(refund, amount_path="refund.amount", currency_path="refund.currency") == (
        amounts.Money(Decimal("12.50"), "GBP")
    )
    assert amounts.read_money(refund, amount_path="lines.0.amount", currency="EUR") == amounts.Money(
        Decimal("3.00"), "EUR"
    )
    assert amounts.read_money(refund, amount_path="") == amounts.Money(None)
    with pytest.raises(amounts.AmountError) as error:
        amounts.read_money(refund, amount_path="refund.total")
    assert set(error.value.errors) == {"refund.total"}
