"""A tools/call that outlives its wait answers `pending` (a result, not an
error) with the action id and URL, having run nothing; the check tool later
gives the decision. An agent-executed type's approval answers with the
approved payload, a lead's edit included; a rejection is an error result
with the lead's reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from agents.models import Tier
from approvals.models import Action
from approvals.rules.lifecycle import Status
from tests.api.test_api_keys import new_key
from tests.support import mcp_client
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.servers import free_port, wait_for

ARGUMENTS = {"note": "ship the spare part", "count": 2, "reasoning": "The customer's unit broke twice."}


@pytest.fixture
def parts_type(agent):
    action_type = ActionTypeFactory(slug="parts.ship", name="Ship a spare part")  # the agent carries it out
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


@pytest.fixture
def queue(lead) -> Client:
    client = Client()
    client.force_login(lead)
    return client


def pending_action() -> Action:
    return wait_for(lambda: Action.objects.filter(status=Status.PENDING).first(), what="the proposal")


def edit_and_approve(queue: Client, action: Action, payload: dict[str, Any]) -> None:
    response = queue.post(
        f"/actions/{action.pk}/approve/", {"payload": json.dumps(payload), "payload_digest": action.standing_digest}
    )
    assert response.status_code in (200, 302)
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED


def check(action_id: str) -> Any:
    return mcp_client.call("countersign_check_action", {"action_id": action_id})


def test_a_call_that_outlives_the_wait_answers_pending_and_the_check_tool_later_gives_the_decision(
    asgi_server, agent, parts_type, queue, settings
):
    settings.MCP_WAIT_SECONDS = 1
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CALLBACK_ALLOW_HTTP = True
    callback_url = f"http://127.0.0.1:{free_port()}/decisions"  # nobody listens: its retries are not this test's
    key = new_key(agent)
    arguments = {**ARGUMENTS, "callback_url": callback_url}
    result = mcp_client.now(asgi_server.url, key, mcp_client.call("parts_ship", arguments))
    assert not result.is_error, result.content
    content = result.structured_content
    action = Action.objects.get()
    assert content["status"] == "pending" and content["action_id"] == str(action.pk)
    assert content["url"].endswith(f"/api/v1/actions/{action.pk}/")
    assert "approved_payload" not in content and action.status == Status.PENDING
    assert action.payload == {"note": "ship the spare part", "count": 2}
    assert action.callback_url == callback_url and action.callback_key is not None

    still = mcp_client.now(asgi_server.url, key, check(str(action.pk)))
    assert not still.is_error and still.structured_content["status"] == "pending"

    edit_and_approve(queue, action, {"note": "ship the spare part", "count": 1})
    decided = mcp_client.now(asgi_server.url, key, check(str(action.pk)))
    assert not decided.is_error, decided.content
    assert decided.structured_content["status"] == Status.APPROVED
    assert decided.structured_content["approved_payload"] == {"note": "ship the spare part", "count": 1}
    assert decided.structured_content["edited"] is True
    assert decided.structured_content["report_url"].endswith(f"/api/v1/actions/{action.pk}/result/")


def test_an_edit_and_approve_while_the_call_waits_answers_with_the_edited_payload(
    asgi_server, agent, parts_type, queue, settings
):
    settings.MCP_WAIT_SECONDS = 30
    answer = mcp_client.in_background(asgi_server.url, new_key(agent), mcp_client.call("parts_ship", ARGUMENTS))
    action = pending_action()
    edit_and_approve(queue, action, {"note": "ship the spare part", "count": 1})
    result = answer.result(timeout=30)
    assert not result.is_error, result.content
    assert result.structured_content["status"] == Status.APPROVED
    assert result.structured_content["approved_payload"] == {"note": "ship the spare part", "count": 1}
    assert "A lead edited it" in result.content[0].text


def test_a_rejection_while_the_call_waits_is_an_error_result_with_the_leads_reason(
    asgi_server, agent, parts_type, queue, settings
):
    settings.MCP_WAIT_SECONDS = 30
    answer = mcp_client.in_background(asgi_server.url, new_key(agent), mcp_client.call("parts_ship", ARGUMENTS))
    action = pending_action()
    queue.post(f"/actions/{action.pk}/reject/", {"reason": "One part is enough; the second is on back order."})
    result = answer.result(timeout=30)
    assert result.is_error
    assert result.structured_content["status"] == Status.REJECTED
    assert "back order" in result.structured_content["reason"] and "back order" in result.content[0].text
