"""A tiny upstream MCP server for the proxy's tests, served over stdio with the SDK's MCPServer (FastMCP).

Every call it receives is appended, as one JSON line, to the file named by UPSTREAM_RECORD, so the test
can tell exactly which arguments reached it (and that nothing did).

    python tests/support/mcp_upstream.py              # over stdio
    python tests/support/mcp_upstream.py --http PORT  # over Streamable HTTP, at http://127.0.0.1:PORT/mcp
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("notes")
RECORD = Path(os.environ["UPSTREAM_RECORD"])


def _received(tool: str, arguments: dict) -> None:
    with RECORD.open("a") as record:
        record.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool(annotations=ToolAnnotations(destructive_hint=True))
def write_note(path: str, text: str) -> str:
    """Write a note to a file."""
    _received("write_note", {"path": path, "text": text})
    return f"wrote {len(text)} characters to {path}"


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_note(path: str) -> str:
    """Read a note."""
    _received("read_note", {"path": path})
    return f"the note at {path}"


@server.tool()
def delete_note(path: str) -> str:
    """Delete a note."""
    _received("delete_note", {"path": path})
    return f"deleted {path}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:  # python tests/support/mcp_upstream.py --http PORT: Streamable HTTP at /mcp
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
