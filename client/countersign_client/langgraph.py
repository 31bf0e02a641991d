"""LangGraph: tools that stop the graph with `interrupt` until Countersign decides.

    from countersign_client.langgraph import requires_approval, run

    write_note = requires_approval(write_note_tool, client=cs, action_type="notes.write")
    graph = builder.compile(checkpointer=InMemorySaver())        # interrupts need a checkpointer
    result = run(graph, {"messages": [...]}, {"configurable": {"thread_id": "t1"}}, client=cs)

1. The gated tool interrupts the graph with a request (`{"countersign": {"action_type", "tool", "arguments"}}`)
   instead of running. The graph's state is checkpointed: a decision may take hours, and the process that
   resumes need not be the one that stopped.
2. `decide` proposes every pending request to Countersign and waits for each verdict, then returns the
   `Command(resume=...)` that resumes the graph; `run` loops invoke → decide → resume until the graph
   finishes. Each call is decided on its own: several tool calls of one model turn stop the graph one
   after the other, and interrupts of parallel branches are proposed together and resumed by id.
3. On resume the tool runs with the approved arguments (a lead may have edited them), once (LangGraph
   re-runs a node on each resume; an action already carried out is not run again), and reports the
   outcome to Countersign; on a refusal it returns the reason to the model and never runs. For an action
   type the gateway carries out itself, the tool never runs either: the gateway did the work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:
    from langchain_core.tools import BaseTool, StructuredTool
    from langgraph.types import Command, Interrupt, interrupt
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError("The LangGraph adapter needs its extra: pip install 'countersign-client[langgraph]'") from missing

from countersign_client.approval import Approval, ask, report_outcome
from countersign_client.client import Countersign, CountersignError

MARK = "countersign"
Reasoning = str | Callable[[dict[str, Any]], str]


def requires_approval(tool: BaseTool, *, client: Countersign, action_type: str | None = None) -> StructuredTool:
    """`tool`, gated: it interrupts the graph for a Countersign decision, then runs with the approved arguments
    (and reports the outcome), or answers the refusal. `action_type` defaults to the tool's name."""
    slug = action_type or tool.name
    done: dict[str, Any] = {}  # action id -> the tool's result, in this process

    def gated(**arguments: Any) -> Any:
        decision = interrupt({MARK: {"action_type": slug, "tool": tool.name, "arguments": arguments}})
        if not decision.get("approved"):
            return f"Refused by Countersign ({decision.get('code', 'refused')}): {decision.get('reason', '')}"
        if decision.get("by_gateway"):
            return f"Carried out by Countersign's gateway (action {decision['action_id']})."
        approval = Approval(decision["action"])
        # LangGraph re-runs a node from its start on every resume: a call carried out before the next
        # interrupt of the same step comes here again. It must not run twice.
        if approval.id in done:
            return done[approval.id]
        status = client.get(approval.id)["status"]
        if status != "approved":
            return f"Already carried out (Countersign action {approval.id}, {status})."
        try:
            result = tool.invoke(approval.arguments)
        except Exception as failure:
            report_outcome(client, approval, "failed", f"{type(failure).__name__}: {failure}")
            raise
        report_outcome(client, approval, "succeeded", result)
        done[approval.id] = result
        return result

    return StructuredTool.from_function(
        func=gated, name=tool.name, description=tool.description, args_schema=tool.args_schema
    )


def decide(
    client: Countersign,
    interrupts: Sequence[Interrupt],
    *,
    reasoning: Reasoning = "",
    wait_timeout: float | None = None,
) -> Command:
    """Ask Countersign about each of our interrupts (in parallel, each decided on its own); the Command that
    resumes the graph with the verdicts. Interrupts that are not ours are refused: resume them yourself."""
    ours = [item for item in interrupts if isinstance(item.value, dict) and MARK in item.value]
    if len(ours) != len(interrupts):
        raise ValueError("Some interrupts are not Countersign's; decide them yourself and resume with all.")

    def one(item: Interrupt) -> dict[str, Any]:
        request = item.value[MARK]
        why = reasoning(request) if callable(reasoning) else reasoning
        why = why or f"The agent called the tool {request['tool']}."
        try:
            approval = ask(client, request["action_type"], request["arguments"], why, wait_timeout=wait_timeout)
        except CountersignError as refusal:
            return {"approved": False, "code": refusal.code, "reason": refusal.message}
        return {
            "approved": True,
            "action_id": approval.id,
            "action": approval.action,
            "by_gateway": approval.by_gateway,
        }

    if len(ours) == 1:
        # One interrupt: resume it by value. (Several tool calls of one ToolNode step interrupt one at a time,
        # and their interrupts share the task, so resuming by id would not reach the next one.)
        return Command(resume=one(ours[0]))
    with ThreadPoolExecutor(max_workers=min(8, len(ours))) as pool:
        verdicts = list(pool.map(one, ours))
    return Command(resume={item.id: verdict for item, verdict in zip(ours, verdicts, strict=True)})


def run(
    graph: Any,
    graph_input: Any,
    config: dict[str, Any],
    *,
    client: Countersign,
    reasoning: Reasoning = "",
    wait_timeout: float | None = None,
) -> Any:
    """Invoke the graph; while it stops on Countersign's interrupts, decide them and resume. The final state."""
    result = graph.invoke(graph_input, config)
    while interrupts := (result.get("__interrupt__") if isinstance(result, dict) else None):
        command = decide(client, interrupts, reasoning=reasoning, wait_timeout=wait_timeout)
        result = graph.invoke(command, config)
    return result
