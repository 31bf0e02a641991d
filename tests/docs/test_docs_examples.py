"""Every code example of the docs runs here, so none can drift (docs/connect.md, "How these examples are
tested"). A real server is started, the demo organisation is loaded into it, and a lead on duty approves
whatever the demo's refund-bot proposes, from another thread, as a lead in the queue would.

- ```python runnable: a script, run in a fresh virtualenv with only the client package (no Django);
- ```sh runnable: run with bash (curl and jq);
- ```python example=<framework>: loaded as a module, its `main` called with a scripted model or CLI;
  (docs/api.md's ```python example=callback-check is run by tests/dispatch/test_callbacks_every_status.py);
- ```json in connect.md: parsed; the proxy's command line checked with the proxy's own parser.

Every ```python block of the agent-facing pages (connect.md, api.md, dispatch.md, the README) must be one
of the first or third kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import runpy
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.models import Agent
from approvals.rules.lifecycle import Status
from tests.support.agent_side import LeadOnDuty, demo_world
from tests.support.client_venv import client_venv

pytestmark = pytest.mark.usefixtures("asgi_server")

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# The agent-facing pages: every Python block in them is run here (a page may run its own examples in a
# test of its own; this list says which pages this file answers for).
AGENT_PAGES = [ROOT / "docs" / name for name in ("connect.md", "api.md", "dispatch.md")] + [ROOT / "README.md"]
CONNECT = ROOT / "docs" / "connect.md"
SCRIPTS = Path(__file__).resolve().parents[1] / "support" / "agent_scripts"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
UNFINISHED = (Status.PENDING, Status.APPROVED, Status.DISPATCHING)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    info: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return [
        Block(path, text.count("\n", 0, match.start()) + 1, match[1], match[2].strip(), match[3])
        for match in FENCE.finditer(text)
    ]


def runnable(language: str) -> list[Block]:
    return [block for path in DOCS for block in blocks(path) if block.language == language and block.info == "runnable"]


def example(name: str) -> Block:
    (found,) = [block for block in blocks(CONNECT) if block.info == f"example={name}"]
    return found


@pytest.fixture
def demo(asgi_server, settings, monkeypatch) -> Iterator[tuple[Agent, dict[str, str]]]:
    bot, env = demo_world(asgi_server.url, settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield bot, env


def test_every_python_block_of_the_agent_pages_runs_here():
    python = [block for path in AGENT_PAGES for block in blocks(path) if block.language == "python"]

    assert python, "no Python examples found: is the fence pattern right?"
    untested = [block.id for block in python if block.info != "runnable" and not block.info.startswith("example=")]
    assert untested == [], "mark these runnable (a script) or example=<name> (with a test below)"


@pytest.mark.parametrize("block", runnable("python"), ids=lambda block: block.id)
def test_a_runnable_python_example_runs_in_a_fresh_virtualenv(block, demo, tmp_path):
    bot, env = demo
    venv = client_venv()
    script = tmp_path / "example.py"
    script.write_text(block.code)

    with LeadOnDuty(bot) as lead:
        done = subprocess.run(  # noqa: S603  (our own docs' example)
            [str(venv.python), str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=venv.env(**env),
        )

    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    assert all(action.status not in UNFINISHED for action in lead.new_actions()), done.stdout


@pytest.mark.parametrize("block", runnable("sh"), ids=lambda block: block.id)
def test_a_runnable_shell_example_runs(block, demo):
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the shell examples need {', '.join(missing)}, which this machine lacks")
    bot, env = demo

    with LeadOnDuty(bot) as lead:
        done = subprocess.run(  # noqa: S603  (our own docs' example)
            [str(shutil.which("bash")), "-euo", "pipefail", "-c", block.code],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": os.environ["PATH"], **env},
        )

    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    assert done.stdout.strip().splitlines()[-1] == Status.SUCCEEDED
    assert [action.status for action in lead.new_actions()] == [Status.SUCCEEDED]


def test_the_openai_agents_example_runs_with_a_scripted_model(demo, tmp_path):
    bot, env = demo
    venv = client_venv()
    venv.install("openai-agents")
    script = tmp_path / "example.py"
    script.write_text(example("openai-agents").code)

    with LeadOnDuty(bot) as lead:
        done = subprocess.run(  # noqa: S603  (our own docs' example)
            [str(venv.python), str(SCRIPTS / "run_openai_example.py"), str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=venv.env(**env),
        )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "Draft saved on SUP-5191: Your parcel" in done.stdout
    assert_drafted(lead, "SUP-5191")


def test_the_langgraph_example_runs_with_a_scripted_model(demo, tmp_path):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    bot, _ = demo
    module = load(example("langgraph"), tmp_path)
    arguments = {"ticket_id": "SUP-5192", "customer_id": "CUS-20417", "subject": "Your parcel", "body": "On its way."}
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(content="", tool_calls=[{"name": "draft_reply", "args": arguments, "id": "call_1"}]),
                AIMessage(content="Drafted."),
            ]
        )
    )

    with LeadOnDuty(bot) as lead:
        module["main"](model)

    assert_drafted(lead, "SUP-5192")


def test_the_claude_agent_sdk_example_runs_with_a_scripted_cli(demo, tmp_path):
    from tests.support.claude_cli import ScriptedCLI

    bot, _ = demo
    module = load(example("claude-agent-sdk"), tmp_path)
    arguments = {"ticket_id": "SUP-5193", "customer_id": "CUS-20417", "subject": "Your parcel", "body": "On its way."}
    cli = ScriptedCLI(server="helpdesk", tool="draft_reply", tool_input=arguments)

    with LeadOnDuty(bot) as lead:
        asyncio.run(module["main"](transport=cli))

    assert cli.permission == {"behavior": "allow", "updatedInput": arguments}
    assert cli.tool_result["content"][0]["text"] == "Draft saved on SUP-5193"
    assert_drafted(lead, "SUP-5193")


def test_the_mcp_configuration_snippets_parse_and_the_proxy_accepts_its_command_line():
    from countersign_client.mcp_proxy import parse

    configs = [json.loads(block.code) for block in blocks(CONNECT) if block.language == "json"]
    servers = {name: server for config in configs for name, server in config["mcpServers"].items()}

    assert servers["countersign"]["url"].endswith("/mcp/")
    assert servers["countersign"]["headers"]["Authorization"].startswith("Bearer csk_")
    proxy = servers["files"]
    assert proxy["command"] == "countersign-mcp-proxy"
    options = parse(
        ["--url", proxy["env"]["COUNTERSIGN_URL"], "--key", proxy["env"]["COUNTERSIGN_KEY"], *proxy["args"]]
    )
    assert options.allow_read_only
    assert options.command == ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/data"]


def test_the_proxy_is_a_console_script_of_the_package():
    pyproject = (ROOT / "client" / "pyproject.toml").read_text()

    assert 'countersign-mcp-proxy = "countersign_client.mcp_proxy:main"' in pyproject


def load(block: Block, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "example.py"
    script.write_text(block.code)
    return runpy.run_path(str(script), run_name="example")


def assert_drafted(lead: LeadOnDuty, ticket: str) -> None:
    (action,) = lead.new_actions()
    assert action.action_type.slug == "support.draft_reply"
    assert action.payload["ticket_id"] == ticket
    assert action.status == Status.SUCCEEDED
    assert [approved.pk for approved in lead.approved] == [action.pk]


# Every page the project ships: the README, the client's and docs/. A link
# never climbs out of its page's folder: the client's README is also the
# package's page on an index, where nothing beside it exists, and docs/ name
# the code they describe in code spans rather than linking up a folder.
PAGES = [ROOT / "README.md", ROOT / "client" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_links_of_every_page_stay_in_its_folder_and_reach_files_and_headings():
    def anchors(page: Path) -> set[str]:
        # GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens.
        headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
        return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}

    broken = []
    for source in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            page = (source.parent / path).resolve() if path else source
            climbs = source.parent not in [page, *page.parents]
            if climbs or not page.exists() or (anchor and anchor not in anchors(page)):
                broken.append(f"{source.relative_to(ROOT)}: {target}")
    assert broken == []
