"""Who and where a change comes from, carried through a request.

The middleware records the client address and user agent; the agent API adds
the key prefix. audit.log.record() copies it into every event, so callers
never pass request details around.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

_request_context: ContextVar[dict[str, str] | None] = ContextVar("audit_request_context", default=None)


def current() -> dict[str, str]:
    return dict(_request_context.get() or {})


def update(**values: str) -> None:
    _request_context.set({**current(), **values})


def _from(request: HttpRequest) -> dict[str, str]:
    return {
        "ip": request.META.get("REMOTE_ADDR", ""),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
    }


class RequestContextMiddleware:
    """Sync and async: a sync-only middleware would make Django run async
    views (the long-poll) in a thread each."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        # Asked of get_response, as __init__ did: the same answer, and it leaves `self` typed as itself.
        if iscoroutinefunction(self.get_response):
            return self._acall(request)
        token = _request_context.set(_from(request))
        try:
            return self.get_response(request)
        finally:
            _request_context.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        token = _request_context.set(_from(request))
        try:
            return await self.get_response(request)
        finally:
            _request_context.reset(token)
