"""The server the intake bench runs: the product's ASGI application, with the
hand-written intake (bench/hand/) at its own path in front.

One uvicorn command serves the agent API, the hand-written intake and the
bare view (bench/bare.py, in the bench URLconf) from the same processes,
settings, pools and Redis: what differs between them is only the code that
answers. The API's requests pass one extra path comparison here.
"""

from __future__ import annotations

from typing import Any

# isort: off
from config.asgi import application as countersign  # sets Django up: the hand-written intake imports its rules
from bench.hand import app as hand_intake
# isort: on

HAND_PREFIX = "/bench/hand/"


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith(HAND_PREFIX):
        await hand_intake.application(scope, receive, send)
        return
    await countersign(scope, receive, send)
