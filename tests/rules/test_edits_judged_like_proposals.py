"""An edit is judged like a proposal: through the lead's real htmx endpoint
(CSRF enforced), an edited payload over a hard limit of the grant is
refused, naming the rule and the numbers, and nothing changes; an edit
within the limits is approved, and the recorded amount, the queue row's
priority and the day's counters follow it."""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

import pytest

from agents.models import Agent, Tier
from approvals import services
from approvals.models import Action, ActionType, Risk
from approvals.rules import routing
from approvals.rules.lifecycle import Status
from tests.support.factories import GrantFactory
from tests.support.money import LeadBrowser, payment, payment_type

pytestmark = pytest.mark.django_db


def granted(agent: Agent, risk: str = Risk.LOW, **limits: Any) -> ActionType:
    action_type = payment_type(risk=risk)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR, **limits)
    return action_type


def proposed(agent: Agent, action_type: ActionType, amount: float) -> Action:
    action, _ = services.propose(agent, action_type, payload=payment(amount), reasoning="Refund the order.")
    assert action.status == Status.PENDING
    return action


def unchanged(action: Action) -> tuple[Any, ...]:
    action.refresh_from_db()
    return (action.status, action.amount, action.approved_payload, action.priority, action.decisions.count())


@pytest.fixture
def browser(lead, department) -> LeadBrowser:
    return LeadBrowser(lead)


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain form"])
def test_it_refuses_an_edit_over_the_per_action_limit_with_the_rule_and_the_numbers(agent, browser, htmx):
    action = proposed(agent, granted(agent, max_amount_per_action=Decimal("2000.00")), 333)
    before = unchanged(action)
    browser.open(action)

    response = browser.approve(action, payment(9999), htmx=htmx)

    assert response.status_code == (200 if htmx else 422)
    text = html.unescape(response.content.decode())
    assert (
        "The edit is refused (limit_exceeded): amount 9,999.00 is over this grant's limit of 2,000.00 per action"
        in (text)
    )
    assert unchanged(action) == before == (Status.PENDING, Decimal("333.00"), None, before[3], 0)


def test_it_refuses_an_edit_that_takes_the_days_total_past_the_daily_limit(agent, browser):
    action_type = granted(agent, max_amount_per_day=Decimal("1000.00"))
    proposed(agent, action_type, 600)
    action = proposed(agent, action_type, 300)
    before = unchanged(action)
    browser.open(action)

    response = browser.approve(action, payment(500))

    text = html.unescape(response.content.decode())
    assert "today's total would be 1,100.00, over this grant's daily limit of 1,000.00" in text
    assert unchanged(action) == before


def test_it_approves_an_edit_within_the_limits_and_the_counters_follow_it(agent, browser):
    action_type = granted(agent, max_amount_per_day=Decimal("1000.00"))
    proposed(agent, action_type, 600)
    action = proposed(agent, action_type, 300)
    browser.open(action)

    browser.approve(action, payment(400))  # 600 + 400: exactly the limit

    action.refresh_from_db()
    assert (action.status, action.amount, action.approved_payload) == (Status.APPROVED, Decimal("400.00"), payment(400))
    # The day now holds 1,000.00: the edit's amount, not the proposal's 300.00.
    blocked, _ = services.propose(agent, action_type, payload=payment(0.01), reasoning="One cent more.")
    assert (blocked.status, blocked.verdict_code) == (Status.BLOCKED, "limit_exceeded")
    assert "today's total would be 1,000.01" in blocked.verdict_reason


def test_it_moves_the_recorded_amount_and_the_queue_row_with_an_edit_still_waiting(agent, browser, lead):
    action = proposed(agent, granted(agent, risk=Risk.CRITICAL), 50)
    browser.open(action)

    browser.approve(action, payment(50000))  # the first of two approvals: it keeps waiting

    action.refresh_from_db()
    assert (action.status, action.amount) == (Status.PENDING, Decimal("50000.00"))
    assert action.priority == routing.priority(Risk.CRITICAL, Decimal("50000.00")) > routing.priority(Risk.CRITICAL, 50)
    row = browser.open_queue().split(f'id="action-{action.pk}"')[1].split("</tr>")[0]
    assert "50,000.00" in row


def test_it_refuses_an_edit_without_a_valid_amount_and_keeps_the_text(agent, browser):
    action = proposed(agent, granted(agent), 120)
    before = unchanged(action)
    browser.open(action)

    response = browser.approve(action, {"account": "DE89", "currency": "EUR"})

    text = html.unescape(response.content.decode())
    assert "amount: The amount is required at 'amount': this action type moves money." in text
    assert unchanged(action) == before
