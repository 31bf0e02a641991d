"""/mcp/: the ASGI app config.asgi mounts for the MCP door.

In front of the SDK's Streamable HTTP transport, each HTTP request:

1. must name a host in ALLOWED_HOSTS (Django's check; this path does not go
   through Django's handler);
2. must carry an agent key, `Authorization: Bearer <key>`, checked by the
   agent API's own AgentKeyAuthentication (hashed keys compared in constant
   time; wrong, expired and revoked keys get the same 401);
3. counts against the agent's rate limit (AgentRateThrottle, shared with
   the REST API: 429 with Retry-After past it).

The SDK's session manager runs stateless (no session to pin to one server
process, so `uvicorn --workers N` and more machines just work) and answers
over SSE, so a waiting tools/call can send progress notifications. It is
started on the first request, on the server's event loop, because neither
`manage.py serve` nor the Procfile's uvicorn runs an ASGI lifespan.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http.request import split_domain_port, validate_host
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from rest_framework.exceptions import AuthenticationFailed

from agents.authentication import AgentKeyAuthentication
from approvals.api.errors import error_body
from approvals.api.throttle import AgentRateThrottle
from approvals.mcp import server
from approvals.mcp.server import SCOPE_KEY, Caller

log = logging.getLogger(__name__)

PATH = "/mcp"


def wants(scope: dict[str, Any]) -> bool:
    """Whether an ASGI request is for this door."""
    path = scope.get("path", "")
    return scope["type"] == "http" and (path == PATH or path.startswith(PATH + "/"))


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _host_allowed(host: str) -> bool:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # as Django's HttpRequest.get_host
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


def _authenticate(headers: dict[str, str], ip: str) -> Caller | Refusal:
    """The agent behind the key, as the REST API finds it; then its rate limit."""
    unauthorized = ((b"www-authenticate", b"Bearer"),)
    try:
        found = AgentKeyAuthentication().authenticate(
            SimpleNamespace(headers={"authorization": headers.get("authorization", "")})
        )
        if found is None:
            return Refusal(401, "unauthorized", "Send the agent key as 'Authorization: Bearer <key>'.", unauthorized)
        agent, key = found
        throttle = AgentRateThrottle()
        if not throttle.allow_request(SimpleNamespace(user=agent), None):  # type: ignore[arg-type]
            wait = int(throttle.wait())
            return Refusal(
                429,
                "throttled",
                f"Request was throttled. Expected available in {wait} seconds.",
                ((b"retry-after", str(wait).encode()),),
            )
        return Caller(agent.pk, key.pk, key.prefix, ip, headers.get("user-agent", "")[:300])
    except AuthenticationFailed as failed:
        return Refusal(401, "unauthorized", str(failed.detail), unauthorized)
    finally:
        connection.close()


async def _refuse(send: Any, refusal: Refusal) -> None:
    body = json.dumps(error_body(refusal.code, refusal.message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *refusal.headers]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MCPDoor:
    def __init__(self) -> None:
        self._server = server.build()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._manager: StreamableHTTPSessionManager | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if not _host_allowed(headers.get("host", "")):
            await _refuse(send, Refusal(400, "bad_host", "This host is not among ALLOWED_HOSTS."))
            return
        client = scope.get("client") or ("", 0)
        caller = await sync_to_async(_authenticate, thread_sensitive=False)(headers, client[0])
        if isinstance(caller, Refusal):
            await _refuse(send, caller)
            return
        manager = await self._running_manager()
        await manager.handle_request({**scope, SCOPE_KEY: caller}, receive, send)

    async def _running_manager(self) -> StreamableHTTPSessionManager:
        """The session manager of this event loop, started on first use. (Tests
        serve the app from several loops in turn: each gets its own.)"""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._ready = asyncio.Event()
            self._manager = StreamableHTTPSessionManager(
                app=self._server,
                stateless=True,
                # The host is checked above; a browser cannot send the key cross-origin without CORS.
                security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
                max_request_body_size=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            )
            self._task = loop.create_task(self._run(self._manager, self._ready))
        await self._ready.wait()
        assert self._manager is not None
        return self._manager

    @staticmethod
    async def _run(manager: StreamableHTTPSessionManager, ready: asyncio.Event) -> None:
        try:
            async with manager.run():
                ready.set()
                await asyncio.Event().wait()  # until the server's loop ends
        finally:
            ready.set()  # never leave a request waiting on a manager that did not start
