"""The agent API's door (/api/v1/): Django and DRF as everywhere else, with
costs of the general HTTP door taken out, as an API of keys does not need
them (measured in docs/performance.md):

- **A lean middleware chain.** Sessions, CSRF, the auth middleware, messages,
  the frame, CSP and htmx headers and axes' lock-out serve pages and logins
  of people; an agent signs each request with its key (DRF's authentication)
  and reads JSON. Kept: SecurityMiddleware (HSTS, nosniff, the referrer
  policy, the HTTPS redirect), CommonMiddleware (the trailing-slash redirect
  agents may rely on) and the audit's request context.
- **No thread per request.** Django runs a request's sync code (a DRF view,
  a sync middleware, signal receivers) on one thread of its own, so that the
  request keeps one database connection: ASGIHandler opens a
  ThreadSensitiveContext per request, whose executor starts a thread and
  stops it when the request ends. `Lanes` keeps those executors: a request
  borrows an idle one (a new one when all are busy) and gives it back, so
  its thread serves the next request. Each request still has one thread to
  itself while it runs, and Django's request_finished still closes (returns
  to the pool) the connection it used.
- **One crossing to that thread.** In Django's async chain every sync
  middleware crosses from the event loop to the request's thread and back
  for its process_request and again for its process_response (MiddlewareMixin
  runs them through sync_to_async), about 0.14 ms of CPU a crossing here.
  The door builds its chain sync and crosses once, for chain and view.
- **The answer first.** What a request leaves for after its answer
  (approvals.after_answer: a proposal's live update, the tasks queued on
  commit) runs
  on the request's thread once the answer is sent, or, when the agent hung
  up first, once the view is done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections

from approvals import after_answer

PREFIX = "/api/v1/"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "audit.context.RequestContextMiddleware",
]

# Idle lanes kept for the next burst; a lane beyond them stops its thread
# when its request ends (a thousand parked long polls leave sixteen threads).
KEEP_IDLE = 16


def wants(scope: dict[str, Any]) -> bool:
    return scope["type"] == "http" and scope["path"].startswith(PREFIX)


class Lanes:
    """Single-thread executors kept from one request to the next. Borrowed
    and given back on the event loop's thread only, so a list is enough."""

    def __init__(self, keep: int = KEEP_IDLE) -> None:
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[None]:
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-lane")
        try:
            # asgiref runs every thread-sensitive call of this request on
            # `executor`, and leaves it running when the request ends.
            async with ThreadSensitiveContext(executor=executor):
                yield
        finally:
            self._give_back(executor)

    def _give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.keep:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)


class AgentAPIHandler(ASGIHandler):
    def __init__(self, lanes: Lanes | None = None) -> None:
        self.lanes = lanes or Lanes()
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        with _chain(MIDDLEWARE):
            super().load_middleware(is_async=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with self.lanes.lane():
            with after_answer.deferring() as pending:
                try:
                    await self.handle(scope, receive, send)
                finally:
                    if not pending.ran:
                        # The answer never went out whole (the client hung up):
                        # the view may still be running on the lane's thread,
                        # and this runs there after it.
                        await sync_to_async(_run_late, thread_sensitive=True)(pending)

    async def get_response_async(self, request: Any) -> Any:
        """The middleware chain and the view in one hop to the request's thread."""
        return await sync_to_async(self._respond, thread_sensitive=True)(request)

    def _respond(self, request: Any) -> Any:
        response = self.get_response(request)
        pending = after_answer.current()
        if pending is not None:
            # ASGIHandler.handle closes the response once it is sent: its
            # closers run then, on this thread, before request_finished.
            response._resource_closers.append(pending.run)  # type: ignore[attr-defined]
        return response


def _run_late(pending: after_answer.Pending) -> None:
    pending.run()
    close_old_connections()  # as request_finished would have, had it come after


@contextmanager
def _chain(middleware: list[str]) -> Iterator[None]:
    """BaseHandler.load_middleware builds the chain from settings.MIDDLEWARE
    and nothing else; it runs once, at start-up, before any request."""
    full = settings.MIDDLEWARE
    settings.MIDDLEWARE = middleware
    try:
        yield
    finally:
        settings.MIDDLEWARE = full
