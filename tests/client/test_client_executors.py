"""The decorator carries an action out once, by whoever its type says: the gateway's webhook (the wrapped
function never runs) or the agent (the function runs with the approved arguments and is reported)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import Tier
from approvals import services
from approvals.models import Action
from approvals.rules.lifecycle import Status
from countersign_client import Countersign, DispatchFailed, requires_approval
from tests.support.agent_side import key_for, when_proposed
from tests.support.dispatching import webhook_type
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.receivers import Answer

pytestmark = pytest.mark.usefixtures("asgi_server")


@pytest.fixture
def cs(asgi_server, agent):
    with Countersign(asgi_server.url, key_for(agent), retries=2) as client:
        yield client


def test_a_gateway_executed_type_is_carried_out_once_by_the_gateway_never_by_the_function(cs, agent, lead, receiver):
    refund_type = webhook_type(receiver.url)
    GrantFactory(agent=agent, action_type=refund_type, tier=Tier.CONTRIBUTOR)
    calls: list[dict] = []

    @requires_approval(refund_type.slug, client=cs, reasoning="The parcel never arrived.")
    def refund(*, note: str, amount: float) -> dict:
        calls.append({"note": note, "amount": amount})
        return {"refund_id": "RF-1"}

    with when_proposed(lambda action: services.approve(action.pk, lead), action_type=refund_type):
        action = refund(note="order 1001", amount=25.0, confidence=0.95)

    assert calls == []  # the gateway did the work: the function never ran
    assert action["status"] == Status.SUCCEEDED
    assert action["executor"] == "webhook"
    assert len(receiver.effects) == 1  # one refund, carried out by the webhook
    assert Action.objects.get(pk=action["id"]).executions.count() == 1


def test_a_failed_gateway_dispatch_raises_and_still_never_runs_the_function(cs, agent, lead, receiver):
    refund_type = webhook_type(receiver.url, max_attempts=1)
    GrantFactory(agent=agent, action_type=refund_type, tier=Tier.CONTRIBUTOR)
    receiver.answer(Answer(422, {"error": "card closed"}))

    @requires_approval(refund_type.slug, client=cs, reasoning="The parcel never arrived.")
    def refund(*, note: str, amount: float) -> None:
        raise AssertionError("the gateway carries this type out; the function must never run")

    with (
        when_proposed(lambda action: services.approve(action.pk, lead), action_type=refund_type),
        pytest.raises(DispatchFailed) as failed,
    ):
        refund(note="order 1001", amount=25.0)

    assert Action.objects.get(pk=failed.value.action["id"]).status == Status.FAILED


def test_an_agent_executed_type_runs_once_with_the_approved_arguments_and_is_reported(cs, agent, lead):
    restock_type = ActionTypeFactory()
    GrantFactory(agent=agent, action_type=restock_type, tier=Tier.CONTRIBUTOR, min_confidence=Decimal("0.5"))
    calls: list[dict] = []

    @requires_approval(restock_type.slug, client=cs, reasoning="Shelf 4 is empty.")
    def restock(*, note: str, count: int) -> dict:
        calls.append({"note": note, "count": count})
        return {"restocked": count}

    edit = lambda action: services.approve(action.pk, lead, edited_payload={"note": "shelf 4", "count": 3})  # noqa: E731
    with when_proposed(edit, action_type=restock_type):
        assert restock(note="shelf 4", count=30) == {"restocked": 3}

    assert calls == [{"note": "shelf 4", "count": 3}]
    action = Action.objects.get(action_type=restock_type)
    assert action.status == Status.SUCCEEDED
    assert action.executions.get().response == {"restocked": 3}
