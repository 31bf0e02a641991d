"""The LangGraph adapter, run for real: a StateGraph with a scripted chat model (langchain's
GenericFakeChatModel, no network) and the prebuilt ToolNode, checkpointed in memory. The gated tool stops
the graph with `interrupt`; the proposal reaches the gateway; a lead decides through the service; the tool
runs with the approved (edited) arguments, or never runs and the model hears the reason."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agents.models import Tier
from approvals import services
from approvals.models import Action
from approvals.rules.lifecycle import Status
from countersign_client import Countersign
from countersign_client.langgraph import requires_approval, run
from tests.support.agent_side import InThread, key_for, when_proposed
from tests.support.factories import ActionTypeFactory, GrantFactory
from tests.support.servers import wait_for

pytestmark = pytest.mark.usefixtures("asgi_server")

NOTE_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}


@pytest.fixture
def cs(asgi_server, agent) -> Iterator[Countersign]:
    with Countersign(asgi_server.url, key_for(agent), retries=2) as client:
        yield client


@pytest.fixture
def note_type(agent):
    action_type = ActionTypeFactory(slug="notes.write", payload_schema=NOTE_SCHEMA)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def agent_graph(cs: Countersign, written: list[dict[str, Any]], *notes: dict[str, str]) -> Any:
    @tool
    def write_note(path: str, text: str) -> str:
        """Write a note to a file."""
        written.append({"path": path, "text": text})
        return f"wrote {path}"

    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="I'll save the note.",
                    tool_calls=[
                        {"name": "write_note", "args": note, "id": f"call_{number}"}
                        for number, note in enumerate(notes or ({"path": "a.txt", "text": "draft"},), start=1)
                    ],
                ),
                AIMessage(content="Done."),
            ]
        )
    )
    builder = StateGraph(MessagesState)
    builder.add_node("model", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_node("tools", ToolNode([requires_approval(write_note, client=cs, action_type="notes.write")]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=InMemorySaver())


def test_an_approved_call_runs_with_the_leads_edited_arguments(cs, note_type, lead):
    written: list[dict[str, Any]] = []
    graph = agent_graph(cs, written)

    edit = lambda action: services.approve(action.pk, lead, edited_payload={"path": "a.txt", "text": "final"})  # noqa: E731
    with when_proposed(edit, action_type=note_type):
        result = run(
            graph,
            {"messages": [("user", "Save my note")]},
            {"configurable": {"thread_id": "t1"}},
            client=cs,
            reasoning="The user asked to save the note.",
        )

    assert written == [{"path": "a.txt", "text": "final"}]
    tool_message = next(message for message in result["messages"] if isinstance(message, ToolMessage))
    assert tool_message.content == "wrote a.txt"
    assert result["messages"][-1].content == "Done."
    action = Action.objects.get(action_type=note_type)
    assert (action.payload, action.reasoning) == (
        {"path": "a.txt", "text": "draft"},
        "The user asked to save the note.",
    )
    assert action.status == Status.SUCCEEDED
    assert action.executions.get().response == "wrote a.txt"


def test_a_rejected_call_never_runs_and_the_model_hears_the_reason(cs, note_type, lead):
    written: list[dict[str, Any]] = []
    graph = agent_graph(cs, written)

    reject = lambda action: services.reject(action.pk, lead, reason="Not in that folder.")  # noqa: E731
    with when_proposed(reject, action_type=note_type):
        result = run(graph, {"messages": [("user", "Save my note")]}, {"configurable": {"thread_id": "t2"}}, client=cs)

    assert written == []
    tool_message = next(message for message in result["messages"] if isinstance(message, ToolMessage))
    assert "Not in that folder." in tool_message.content
    assert Action.objects.get(action_type=note_type).status == Status.REJECTED


def test_each_call_of_a_batch_is_decided_on_its_own(cs, note_type, lead):
    written: list[dict[str, Any]] = []
    graph = agent_graph(cs, written, {"path": "a.txt", "text": "keep"}, {"path": "b.txt", "text": "drop"})

    def decide_each() -> None:  # the calls stop the graph one after the other; each is decided on its own
        for path in ("a.txt", "b.txt"):
            action = wait_for(
                lambda path=path: Action.objects.filter(status=Status.PENDING, payload__path=path).first(),
                what=f"the proposal for {path}",
            )
            if path == "a.txt":
                services.approve(action.pk, lead)
            else:
                services.reject(action.pk, lead, reason="Not that one.")

    with InThread(decide_each):
        result = run(graph, {"messages": [("user", "Save both")]}, {"configurable": {"thread_id": "t3"}}, client=cs)

    assert written == [{"path": "a.txt", "text": "keep"}]  # one ran, the other never did
    answers = sorted(message.content for message in result["messages"] if isinstance(message, ToolMessage))
    assert answers[0].startswith("Refused by Countersign") and "Not that one." in answers[0]
    assert answers[1] == "wrote a.txt"
    statuses = {action.payload["path"]: action.status for action in Action.objects.filter(action_type=note_type)}
    assert statuses == {"a.txt": Status.SUCCEEDED, "b.txt": Status.REJECTED}
