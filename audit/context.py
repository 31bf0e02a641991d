"""Who and where a change comes from, carried through a request.

The middleware records the client address and user agent; the agent API adds
the key prefix. audit.log.record() copies it into every event, so callers
never pass request details around.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

_request_context: ContextVar[dict[str, str] | None] = ContextVar("audit_request_context", default=None)


def current() -> dict[str, str]:
    return dict(_request_context.get() or {})


def update(**values: str) -> None:
    _request_context.set({**current(), **values})


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request_context.set(
            {
                "ip": request.META.get("REMOTE_ADDR", ""),
                "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
            }
        )
        try:
            return self.get_response(request)
        finally:
            _request_context.reset(token)
