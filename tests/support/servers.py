"""Real servers for the integration tests: the ASGI app under uvicorn in a
thread, an in-process websocket client for ASGI apps, and a patient poll
for what other threads write."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import uvicorn

T = TypeVar("T")

# uvicorn closes a keep-alive connection after 5 s idle; a client reusing one
# just then gets "Server disconnected". Clients of the test servers let theirs
# go sooner.
CLIENT_KEEPALIVE_SECONDS = 2.0


def free_port() -> int:
    """A port nobody listens on now; the kernel picks it, so parallel runs don't clash."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe: Callable[[], T | None], *, timeout: float = 15.0, what: str = "the condition") -> T:
    """Poll `probe` until it returns something truthy and return that.

    Another thread (a worker, a server) does the work, so there is no event
    to wait on; a short poll with a deadline replaces a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        time.sleep(0.05)


async def await_for(
    probe: Callable[[], T | Awaitable[T | None] | None], *, timeout: float = 15.0, what: str = "the condition"
) -> T:
    """wait_for on an event loop, which goes on meanwhile (work it runs later,
    on a timer, among it); the probe may await (an async ORM read, say)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return cast(T, result)
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        await asyncio.sleep(0.01)


class ASGIServerThread:
    """Serves an ASGI application with uvicorn on 127.0.0.1 from a daemon
    thread. Use it as a context manager: it returns once the socket listens
    and, on exit, stops the server and joins the thread."""

    def __init__(self, app: Any, *, port: int | None = None, start_timeout: float = 15.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            # Loop, HTTP and websocket implementations stay on "auto", as the
            # Procfile's uvicorn runs them (uvloop, httptools, websockets).
            lifespan="off",
            log_level="warning",
            # An open websocket must not hold the test run hostage.
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> ASGIServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), timeout=self.start_timeout)
        if not self.server.started:
            raise RuntimeError(f"uvicorn did not start on port {self.port}; see the log above.")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        if self.thread.is_alive():
            raise RuntimeError(f"uvicorn on port {self.port} did not stop within 15 s.")
