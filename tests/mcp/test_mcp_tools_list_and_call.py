"""The MCP door at /mcp/, through the SDK's own client against the real
ASGI server: tools/list shows the agent's grants and nothing else; a
tools/call is a proposal that waits for the lead, who approves it in the
queue, and answers with the dispatch's result."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from agents.models import Tier
from approvals.models import Action, Risk
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.api.test_api_keys import new_key
from tests.support import mcp_client
from tests.support.dispatching import webhook_type
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.servers import wait_for

REASON = "The parcel never arrived; the carrier confirmed it."


@pytest.fixture
def refund_type(receiver, agent):
    action_type = webhook_type(receiver.url, slug="payments.refund", name="Refund a payment", risk=Risk.MEDIUM)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def pending_action() -> Action:
    return wait_for(lambda: Action.objects.filter(status=Status.PENDING).first(), what="the proposal")


def test_it_lists_the_granted_types_as_tools_and_nothing_else(asgi_server, agent, refund_type):
    ActionTypeFactory(slug="records.delete", name="Delete a record")  # exists, not granted
    listed = mcp_client.now(asgi_server.url, new_key(agent), mcp_client.list_tools)
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {"payments_refund", "countersign_check_action"}
    refund = tools["payments_refund"]
    assert "payments.refund" in refund.description
    assert "Risk: medium" in refund.description and "contributor" in refund.description
    schema = refund.input_schema
    assert {"note", "count", "amount", "reasoning", "confidence"} <= set(schema["properties"])
    assert "reasoning" in schema["required"]


def test_a_call_waits_for_the_lead_who_approves_it_in_the_queue_and_gets_the_result(
    asgi_server, agent, refund_type, lead, receiver, settings
):
    settings.MCP_WAIT_SECONDS = 30
    settings.MCP_PROGRESS_SECONDS = 1
    progress: list[Any] = []
    arguments = {"note": "order 1001", "amount": 25.0, "reasoning": REASON, "confidence": 0.9}
    answer = mcp_client.in_background(
        asgi_server.url, new_key(agent), mcp_client.call("payments_refund", arguments, progress)
    )
    action = pending_action()
    assert action.payload == {"note": "order 1001", "amount": 25.0} and action.reasoning == REASON
    wait_for(lambda: progress, what="a progress notification")
    assert not answer.done() and not receiver.requests  # nothing runs before the lead decides

    queue = Client()
    queue.force_login(lead)
    response = queue.post(f"/actions/{action.pk}/approve/", {"payload_digest": action.standing_digest})
    assert response.status_code in (200, 302)

    result = answer.result(timeout=30)
    assert not result.is_error, result.content
    assert result.structured_content["status"] == Status.SUCCEEDED
    assert result.structured_content["action_id"] == str(action.pk)
    assert result.structured_content["result"]["status"] == 201  # the receiver's answer, passed on
    assert len(receiver.effects) == 1  # the gateway carried it out, once
    assert "waiting for a lead" in progress[0][2]
    proposed = AuditEvent.objects.get(verb="action.proposed", object_id=str(action.pk))
    assert proposed.context["door"] == "mcp" and proposed.context["key_prefix"]
