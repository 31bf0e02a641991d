"""Runs the OpenAI Agents SDK example of docs/connect.md (the file given as the argument) with a scripted
model in place of a real one: `main(model=...)` of the example, as the page says.

    python run_openai_example.py example.py
"""

from __future__ import annotations

import asyncio
import runpy
import sys

from scripted_openai_model import ScriptedModel

ARGUMENTS = {
    "ticket_id": "SUP-5191",
    "customer_id": "CUS-20417",
    "subject": "Your parcel",
    "body": "It is with the carrier; we have opened a claim.",
}

example = runpy.run_path(sys.argv[1], run_name="example")
asyncio.run(example["main"](model=ScriptedModel("draft_reply", ARGUMENTS)))
