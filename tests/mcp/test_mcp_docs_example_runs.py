"""The Python example in docs/mcp.md, run as written against the real
server (only its address swapped for the test server's), so it cannot drift."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from agents.models import Tier
from approvals.demo.organisation import CAPABILITIES
from approvals.models import Action
from tests.api.test_api_keys import new_key
from tests.support.factories import ActionTypeFactory, GrantFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_docs_client_example_lists_tools_and_gets_a_pending_answer(asgi_server, agent, settings, capsys):
    settings.MCP_WAIT_SECONDS = 1
    refund = next(capability for capability in CAPABILITIES if capability.slug == "payments.refund")
    action_type = ActionTypeFactory(
        slug=refund.slug, name=refund.name, payload_schema=refund.schema, amount_path="amount", currency_path="currency"
    )
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    (example,) = python_blocks(DOC.read_text())
    namespace: dict = {}
    exec(example.replace("https://countersign.example.com", asgi_server.url), namespace)  # noqa: S102  (our own docs)

    asyncio.run(namespace["refund"](new_key(agent)))

    printed = capsys.readouterr().out
    action = Action.objects.get()
    assert "['payments_refund', 'countersign_check_action']" in printed
    assert f"False pending {action.pk}" in printed
    assert "waiting for a lead's decision" in printed  # the progress callback
