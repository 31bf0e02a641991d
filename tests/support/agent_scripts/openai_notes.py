"""An OpenAI Agents SDK agent with a scripted model (no network), gated by countersign_client.openai_agents.
Run in a virtualenv with `countersign-client[openai-agents]` (tests/client/test_adapter_openai_agents.py does);
COUNTERSIGN_URL and COUNTERSIGN_KEY in the environment. Prints, as JSON, what the tool wrote and the run's
final output. The model asks for write_note(path="a.txt", text="draft"), then repeats what the tool said.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from scripted_openai_model import ScriptedModel

from agents import Agent, function_tool
from countersign_client import Countersign
from countersign_client.openai_agents import CountersignApprovals

written: list[dict[str, Any]] = []


@function_tool
def write_note(path: str, text: str) -> str:
    """Write a note to a file."""
    written.append({"path": path, "text": text})
    return f"wrote {path}"


async def main() -> None:
    model = ScriptedModel("write_note", {"path": "a.txt", "text": "draft"})
    with Countersign(os.environ["COUNTERSIGN_URL"], os.environ["COUNTERSIGN_KEY"]) as cs:
        approvals = CountersignApprovals(cs, reasoning="The user asked to save the note.")
        agent = Agent(name="notes", model=model, tools=[approvals.gate(write_note, action_type="notes.write")])
        result = await approvals.run(agent, "Save my note")
    print(json.dumps({"written": written, "final_output": result.final_output}))


if __name__ == "__main__":
    asyncio.run(main())
