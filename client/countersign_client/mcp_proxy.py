"""countersign-mcp-proxy: put Countersign between an agent and any MCP server.

It starts (stdio) or connects to (HTTP) the upstream MCP server, and serves the same tools over stdio to the
agent's MCP client. Every `tools/call` becomes a proposal of the action type `<prefix>.<tool>`:

1. On a tool's first call the proxy registers that action type with the tool's input schema
   (POST /api/v1/action-types/): agent-executed, with no grant, so it is refused (`not_granted`) until an
   admin grants it to this agent. An existing type is never changed.
2. The call's arguments are proposed; the proxy waits for the verdict. Refused, rejected, expired,
   cancelled or shadowed: an error result with the reason, and the upstream server never hears of it.
3. Approved: the approved arguments (a lead may have edited them) go to the upstream server, and its
   answer is reported as the action's result (`succeeded`, or `failed` for an error result) and returned.

With --allow-read-only, tools the upstream marks read-only (`readOnlyHint`) pass straight through, with no
proposal. Each tool gains two optional arguments, `reasoning` and `confidence`, for the lead (unless it has
arguments of those names already); they are never sent upstream.

    COUNTERSIGN_URL=https://countersign.example.com COUNTERSIGN_KEY=csk_... \\
        countersign-mcp-proxy -- npx -y @modelcontextprotocol/server-filesystem /srv/data
    countersign-mcp-proxy --upstream-url https://tools.example.com/mcp/
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

try:
    import anyio
    import anyio.abc
    import mcp_types as types
    from mcp import Client, StdioServerParameters
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError("The MCP proxy needs the mcp extra: pip install 'countersign-client[mcp]'") from missing

from countersign_client.approval import Approval, ask, report_outcome
from countersign_client.client import Countersign, CountersignError

log = logging.getLogger("countersign.mcp_proxy")

PROPOSAL_ARGUMENTS = {
    "reasoning": {"type": "string", "description": "Why this call is needed, for the person who approves it."},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1, "description": "How sure you are, 0 to 1."},
}


class Proxy:
    """The tools of one upstream MCP server, each call gated by Countersign."""

    def __init__(
        self,
        upstream: Client,
        countersign: Countersign,
        *,
        prefix: str,
        allow_read_only: bool = False,
        reasoning: str = "",
        wait_timeout: float | None = None,
        progress_seconds: float = 10.0,
    ) -> None:
        self.upstream, self.countersign = upstream, countersign
        self.prefix, self.allow_read_only = prefix, allow_read_only
        self.reasoning, self.wait_timeout = reasoning, wait_timeout
        self.progress_seconds = progress_seconds
        self.tools: dict[str, types.Tool] = {}
        self.registered: set[str] = set()

    async def load_tools(self) -> None:
        cursor: str | None = None
        while True:
            page = await self.upstream.list_tools(cursor=cursor)
            self.tools.update({tool.name: tool for tool in page.tools})
            if not (cursor := page.next_cursor):
                return

    def action_type(self, tool: str) -> str:
        return f"{self.prefix}.{tool}"

    def passes_through(self, tool: types.Tool) -> bool:
        return self.allow_read_only and bool(tool.annotations and tool.annotations.read_only_hint)

    def exported(self, tool: types.Tool) -> types.Tool:
        """The tool as the agent sees it: the upstream's, plus the proposal's own optional arguments."""
        if self.passes_through(tool):
            return tool
        schema = dict(tool.input_schema)
        properties = dict(schema.get("properties") or {})
        for name, spec in PROPOSAL_ARGUMENTS.items():
            properties.setdefault(name, spec)
        schema["properties"] = properties
        note = f"Needs approval in Countersign (action type {self.action_type(tool.name)})."
        description = f"{tool.description}\n\n{note}" if tool.description else note
        return tool.model_copy(update={"input_schema": schema, "description": description})

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[self.exported(tool) for tool in self.tools.values()])

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            return refused(f"No tool named {params.name!r} upstream.")
        arguments = dict(params.arguments or {})
        if self.passes_through(tool):
            return await self.upstream.call_tool(tool.name, arguments)
        own = (tool.input_schema.get("properties") or {}).keys()
        extras = {name: arguments.pop(name) for name in PROPOSAL_ARGUMENTS if name not in own and name in arguments}
        approval = await self.approve_informed(ctx, tool, arguments, extras)
        if isinstance(approval, CountersignError):
            return refused(f"Countersign refused the call ({approval.code}): {approval.message}")
        if approval.by_gateway:
            return text_result(f"Countersign's gateway carried this action out ({approval.action['status']}).")
        try:
            result = await self.upstream.call_tool(tool.name, approval.arguments)
        except Exception as failure:
            await anyio.to_thread.run_sync(
                report_outcome, self.countersign, approval, "failed", f"{type(failure).__name__}: {failure}"
            )
            return refused(f"The upstream server failed: {failure}")
        outcome = "failed" if result.is_error else "succeeded"
        await anyio.to_thread.run_sync(report_outcome, self.countersign, approval, outcome, outcome_detail(result))
        return result

    async def approve_informed(
        self, ctx: Any, tool: types.Tool, arguments: dict[str, Any], extras: dict[str, Any]
    ) -> Approval | CountersignError:
        """`approve` in a worker thread while the client hears a progress notification every
        `progress_seconds` (when it asked for progress): a decision may take hours, and many MCP clients
        keep waiting only while they hear something."""
        outcome: list[Approval | CountersignError] = []

        async def decided(group: anyio.abc.TaskGroup) -> None:
            try:
                outcome.append(
                    await anyio.to_thread.run_sync(self.approve, tool, arguments, extras, abandon_on_cancel=True)
                )
            except CountersignError as refusal:
                outcome.append(refusal)
            finally:
                group.cancel_scope.cancel()

        message = f"Waiting for a decision in Countersign ({self.action_type(tool.name)})"
        async with anyio.create_task_group() as group:
            group.start_soon(decided, group)
            beat = 0
            while True:
                await anyio.sleep(self.progress_seconds)
                beat += 1
                await ctx.session.report_progress(beat, message=message)
        return outcome[0]

    def approve(self, tool: types.Tool, arguments: dict[str, Any], extras: dict[str, Any]) -> Approval:
        """Register the tool's action type on first sight, propose the call and wait (in a worker thread)."""
        slug = self.action_type(tool.name)
        if slug not in self.registered:
            self.countersign.register_action_type(
                slug, tool.input_schema, name=tool.title or tool.name, description=tool.description or ""
            )
            self.registered.add(slug)
        reasoning = str(extras.get("reasoning") or self.reasoning or f"Call {tool.name} through the MCP proxy.")
        confidence = extras.get("confidence")
        return ask(
            self.countersign,
            slug,
            arguments,
            reasoning,
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            wait_timeout=self.wait_timeout,
        )


def refused(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def text_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)])


def outcome_detail(result: types.CallToolResult) -> Any:
    if result.structured_content is not None:
        return result.structured_content
    return {"text": "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="countersign-mcp-proxy",
        description="Serve an MCP server's tools over stdio, each call approved in Countersign first.",
        epilog="Upstream: either --upstream-url URL (Streamable HTTP) or a command after --.",
    )
    parser.add_argument("--url", default=os.environ.get("COUNTERSIGN_URL"), help="Countersign (COUNTERSIGN_URL)")
    parser.add_argument("--key", default=None, help="the agent's key; better: COUNTERSIGN_KEY in the environment")
    parser.add_argument("--upstream-url", help="the upstream MCP server's Streamable HTTP URL")
    parser.add_argument("--prefix", help="action types are <prefix>.<tool> (default: mcp.<upstream's name>)")
    parser.add_argument("--allow-read-only", action="store_true", help="read-only tools need no approval")
    parser.add_argument("--reasoning", default="", help="reasoning for calls that give none")
    parser.add_argument("--wait-timeout", type=float, default=None, help="seconds; withdraw undecided proposals")
    parser.add_argument(
        "--progress-seconds", type=float, default=10.0, help="progress notifications while a decision is awaited"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the upstream command and its arguments")
    options = parser.parse_args(argv)
    if options.command[:1] == ["--"]:
        options.command = options.command[1:]
    options.key = options.key or os.environ.get("COUNTERSIGN_KEY")
    if not options.url or not options.key:
        parser.error("give Countersign's URL and the agent's key (COUNTERSIGN_URL, COUNTERSIGN_KEY)")
    if bool(options.upstream_url) == bool(options.command):
        parser.error("give exactly one upstream: --upstream-url URL, or -- COMMAND ARGS...")
    return options


def upstream_of(options: argparse.Namespace) -> StdioServerParameters | str:
    if options.upstream_url:
        return str(options.upstream_url)
    # The upstream inherits the environment, but never the agent's key.
    env = {name: value for name, value in os.environ.items() if name != "COUNTERSIGN_KEY"}
    return StdioServerParameters(command=options.command[0], args=options.command[1:], env=env)


async def serve(options: argparse.Namespace) -> None:
    with Countersign(options.url, options.key) as countersign:
        async with Client(upstream_of(options)) as upstream:
            name = upstream.server_info.name if upstream.server_info else "upstream"
            proxy = Proxy(
                upstream,
                countersign,
                prefix=options.prefix or f"mcp.{name}",
                allow_read_only=options.allow_read_only,
                reasoning=options.reasoning,
                wait_timeout=options.wait_timeout,
                progress_seconds=options.progress_seconds,
            )
            await proxy.load_tools()
            server: Server[Any] = Server(
                "countersign-mcp-proxy", on_list_tools=proxy.list_tools, on_call_tool=proxy.call_tool
            )
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="countersign-mcp-proxy: %(message)s")
    anyio.run(serve, parse(argv))


if __name__ == "__main__":
    main()
