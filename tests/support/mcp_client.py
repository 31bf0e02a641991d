"""The SDK's own MCP client (mcp.client.streamable_http) against a test
server, run on its own event loop in a background thread so the test's
thread stays free to act as a lead meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mcp-client")


async def session_do(url: str, key: str, work: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Open an MCP session to `url`/mcp/ with the agent key and run `work` in it."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
        streamable_http_client(f"{url}/mcp/", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def in_background(url: str, key: str, work: Callable[[ClientSession], Awaitable[T]]) -> Future[T]:
    return _pool.submit(asyncio.run, session_do(url, key, work))


def now(url: str, key: str, work: Callable[[ClientSession], Awaitable[T]]) -> T:
    return in_background(url, key, work).result(timeout=60)


def call(name: str, arguments: dict[str, Any], progress: list[Any] | None = None) -> Callable[[ClientSession], Any]:
    async def work(session: ClientSession) -> Any:
        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            if progress is not None:
                progress.append((done, total, message))

        return await session.call_tool(name, arguments, progress_callback=on_progress)

    return work


async def list_tools(session: ClientSession) -> Any:
    return await session.list_tools()
