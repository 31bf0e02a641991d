"""The client package as a new user gets it: a fresh virtualenv (no Django, nothing of the server), the
package installed from the repository with pip, and the docs' example agent (docs/connect.md, "Propose,
wait, carry out, report") run against a live server with the demo loaded. A lead approves it in the
queue's service; the agent carries the approved draft out, reports, and finishes."""

from __future__ import annotations

import re
import subprocess

import pytest

from approvals.rules.lifecycle import Status
from tests.docs.test_docs_examples import CONNECT, blocks
from tests.support.agent_side import CLIENT_PACKAGE, LeadOnDuty, demo_world
from tests.support.client_venv import client_venv

pytestmark = pytest.mark.usefixtures("asgi_server")


def the_example() -> str:
    (block,) = [
        block
        for block in blocks(CONNECT)
        if block.info == "runnable" and "cs.propose(" in block.code and "cs.report(" in block.code
    ]
    return block.code


def test_the_package_installs_without_django_and_says_its_version():
    venv = client_venv()

    assert not venv.has("django")
    assert not venv.has("approvals")  # nothing of the server came along
    version = subprocess.run(  # noqa: S603  (our own virtualenv)
        [str(venv.python), "-c", "import countersign_client; print(countersign_client.__version__)"],
        capture_output=True,
        text=True,
        cwd=venv.root,
        env=venv.env(),
        check=True,
    ).stdout.strip()
    declared = re.search(r'^version = "(.+)"$', (CLIENT_PACKAGE / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared is not None and version == declared[1]


def test_the_docs_example_agent_runs_in_it_a_lead_approves_and_it_finishes(asgi_server, settings, tmp_path):
    venv = client_venv()
    bot, env = demo_world(asgi_server.url, settings)
    script = tmp_path / "agent.py"
    script.write_text(the_example())

    with LeadOnDuty(bot) as lead:
        done = subprocess.run(  # noqa: S603  (the docs' example)
            [str(venv.python), str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=venv.env(**env),
        )

    assert done.returncode == 0, done.stderr[-3000:]
    (action,) = lead.new_actions()
    assert [approved.pk for approved in lead.approved] == [action.pk]  # it waited for the lead
    assert action.action_type.slug == "support.draft_reply"
    assert action.status == Status.SUCCEEDED
    assert action.executions.get().response == {"draft_id": "DR-7731"}
    assert done.stdout.splitlines() == [
        "pending - Contributor tier: every action waits for a human.",
        "Saving the draft: Your kettle",
        "Reported: succeeded",
    ]
