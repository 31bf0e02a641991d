"""The MCP door: Countersign as a Model Context Protocol server at /mcp/
(Streamable HTTP, the official `mcp` SDK). See docs/mcp.md.

- tools.py: an agent's grants as tools (names, input schemas, descriptions)
  and a tool's arguments back into a proposal body;
- answers.py: what a tools/call answers for each status of the action;
- server.py: the SDK's low-level Server, its handlers and the bounded wait;
- door.py: the ASGI app config.asgi mounts at /mcp/ (agent key, host
  check, rate limit, and the SDK's session manager, started lazily).
"""
