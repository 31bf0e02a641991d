"""The MCP door on the embedded default (`./run`): SQLite, the in-memory
channel layer and in-process tasks. A tools/call waits on the in-memory
layer and wakes when a lead approves in the queue."""

from __future__ import annotations

from django.test import Client

from agents.models import Tier
from approvals.models import Action
from approvals.rules.lifecycle import Status
from tests.api.test_api_keys import new_key
from tests.support import mcp_client
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.servers import wait_for


def test_a_call_waits_on_the_embedded_run_and_gets_the_approval(embedded_server, agent, lead, settings):
    settings.MCP_WAIT_SECONDS = 30
    GrantFactory(agent=agent, action_type=ActionTypeFactory(slug="parts.ship"), tier=Tier.CONTRIBUTOR)
    arguments = {"note": "ship it", "reasoning": "The unit broke."}
    answer = mcp_client.in_background(embedded_server.url, new_key(agent), mcp_client.call("parts_ship", arguments))
    action = wait_for(lambda: Action.objects.filter(status=Status.PENDING).first(), what="the proposal")
    queue = Client()
    queue.force_login(lead)
    queue.post(f"/actions/{action.pk}/approve/", {"payload_digest": action.standing_digest})
    result = answer.result(timeout=30)
    assert not result.is_error, result.content
    assert result.structured_content["status"] == Status.APPROVED
    assert result.structured_content["approved_payload"] == {"note": "ship it"}
