"""The OpenAI Agents SDK adapter, run for real: Runner.run with a scripted Model (no network), its tool
approval interruptions decided in Countersign. openai-agents needs websockets<17 and the server pins 17,
so it runs where an agent would: in a fresh virtualenv with `countersign-client[openai-agents]` installed
from the repository (tests/support/client_venv.py), as a program (tests/support/agent_scripts/openai_notes.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agents.models import Tier
from approvals import services
from approvals.models import Action
from approvals.rules.lifecycle import Status
from tests.support.agent_side import key_for, when_proposed
from tests.support.client_venv import client_venv
from tests.support.factories import ActionTypeFactory, GrantFactory

pytestmark = pytest.mark.usefixtures("asgi_server")

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "agent_scripts" / "openai_notes.py"
NOTE_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}


@pytest.fixture
def venv():
    venv = client_venv()
    venv.install("openai-agents")
    return venv


@pytest.fixture
def note_type(agent):
    action_type = ActionTypeFactory(slug="notes.write", payload_schema=NOTE_SCHEMA)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def run_agent(venv, server_url: str, key: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603  (our own command line)
        [str(venv.python), str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=venv.root,  # not the repository: its agents/ app would shadow the SDK's `agents`
        env=venv.env(COUNTERSIGN_URL=server_url, COUNTERSIGN_KEY=key),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_approved_call_runs_with_the_leads_edited_arguments(venv, asgi_server, agent, lead, note_type):
    edit = lambda action: services.approve(action.pk, lead, edited_payload={"path": "a.txt", "text": "final"})  # noqa: E731
    with when_proposed(edit, action_type=note_type, timeout=60):
        output = run_agent(venv, asgi_server.url, key_for(agent))

    assert output == {"written": [{"path": "a.txt", "text": "final"}], "final_output": "wrote a.txt"}
    action = Action.objects.get(action_type=note_type)
    assert (action.payload, action.reasoning) == (
        {"path": "a.txt", "text": "draft"},
        "The user asked to save the note.",
    )
    assert action.status == Status.SUCCEEDED
    assert action.executions.get().response == "wrote a.txt"


def test_a_rejected_call_never_runs_and_the_model_reads_the_reason(venv, asgi_server, agent, lead, note_type):
    reject = lambda action: services.reject(action.pk, lead, reason="Not in that folder.")  # noqa: E731
    with when_proposed(reject, action_type=note_type, timeout=60):
        output = run_agent(venv, asgi_server.url, key_for(agent))

    assert output["written"] == []
    assert "Not in that folder." in output["final_output"]
    assert Action.objects.get(action_type=note_type).status == Status.REJECTED
