"""A scripted model for the OpenAI Agents SDK (its Model interface; no network): it asks for one tool call,
then answers with the last tool output (or refusal) it was given."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agents.models.interface import Model
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from agents import ModelResponse, Usage


class ScriptedModel(Model):
    def __init__(self, tool: str, arguments: dict[str, Any]) -> None:
        self.tool, self.arguments, self.turns = tool, arguments, 0

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        self.turns += 1
        if self.turns == 1:
            call = ResponseFunctionToolCall(
                type="function_call",
                id="fc_1",
                call_id="call_1",
                name=self.tool,
                arguments=json.dumps(self.arguments),
                status="completed",
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        outputs = [item for item in input if isinstance(item, dict) and item.get("type") == "function_call_output"]
        text = str(outputs[-1]["output"]) if outputs else "nothing"
        message = ResponseOutputMessage(
            type="message",
            id="msg_1",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError
