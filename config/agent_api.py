"""The agent API's door (/api/v1/): Django and DRF as everywhere else, with
costs of the general HTTP door taken out, as an API of keys does not need
them (measured in docs/performance.md):

- **A lean middleware chain.** Sessions, CSRF, the auth middleware, messages,
  the frame, CSP and htmx headers and axes' lock-out serve pages and logins
  of people; an agent signs each request with its key (DRF's authentication)
  and reads JSON. Kept: SecurityMiddleware (HSTS, nosniff, the referrer
  policy, the HTTPS redirect), CommonMiddleware (the trailing-slash redirect
  agents may rely on) and the audit's request context.
- **No thread per request, and few at work.** Django runs a request's sync
  code (a DRF view, a sync middleware, signal receivers) on one thread of
  its own, so that the request keeps one database connection: ASGIHandler
  opens a ThreadSensitiveContext per request, whose executor starts a
  thread and stops it when the request ends. `Lanes` keeps those executors:
  a request borrows an idle one and gives it back, so its thread serves the
  next request. Each request still has one thread to itself while it runs,
  and Django's request_finished still closes (returns to the pool) the
  connection it used. At most settings.AGENT_API_THREADS (4) requests of a
  process run at once; the others wait on the event loop, holding no
  thread, for a lane. Python runs one thread at a time: more threads only
  overlap their waits on PostgreSQL and Redis, and each hand-over of the
  interpreter between them costs CPU. With sixteen requests in flight per
  process, unbounded, the intake's server CPU was 7.4-7.7 ms a request;
  with four lanes 5.6-5.8 (docs/performance.md).
- **Two crossings to that thread.** Django's handler crosses from the
  event loop to the request's thread for request_started, again for the
  view (and in its async chain, twice more for each sync middleware: once
  for process_request, once for process_response), and again for the
  response's close; about 0.14 ms of CPU a crossing here. The door builds
  its chain sync and crosses twice: request_started, chain and view
  together; then the close.
- **The answer first.** What a request leaves for after its answer
  (approvals.after_answer: the tasks queued on commit, a live update's
  sends) runs once the answer is sent, or could not be: the sync work on
  the request's thread with the close, the sends on the event loop after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing, contextmanager
from typing import Any, cast
from weakref import WeakKeyDictionary

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from approvals import after_answer

PREFIX = "/api/v1/"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "audit.context.RequestContextMiddleware",
]


def wants(scope: dict[str, Any]) -> bool:
    return scope["type"] == "http" and scope["path"].startswith(PREFIX)


class Lanes:
    """Single-thread executors kept from one request to the next, at most
    `limit` of them at work at once. A request finding them all at work
    waits on the event loop for one, holding no thread (a gate per event
    loop: a process may run several, as the tests' servers do). Borrowed and
    given back on the loop's thread only, so a list is enough for the idle."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or settings.AGENT_API_THREADS  # at least 1 (config/settings.py)
        self._idle: list[ThreadPoolExecutor] = []
        self._gates: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = WeakKeyDictionary()

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[None]:
        async with self._gate():
            executor = self._idle.pop() if self._idle else _one_thread()
            try:
                # asgiref runs every thread-sensitive call of this request on
                # `executor`, and leaves it running when the request ends.
                async with ThreadSensitiveContext(executor=executor):
                    yield
            finally:
                self._give_back(executor)

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.limit)
        return gate

    def _give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.limit:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)


def _one_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-lane")


class AgentAPIHandler(ASGIHandler):
    def __init__(self, lanes: Lanes | None = None) -> None:
        self.lanes = lanes or Lanes()
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        with _chain(MIDDLEWARE):
            super().load_middleware(is_async=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGIHandler.handle in two crossings to the request's thread, not
        three, and without its watch for a disconnect: that watch can only
        stop an async view, and every view here is sync. A request whose
        agent hung up runs to its end as any other; the server drops its
        answer. It holds a lane only while it needs the thread: a body still
        arriving (a slow upload) and the live update's sends do not."""
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        with after_answer.deferring() as pending, closing(body):
            try:
                async with self.lanes.lane():
                    response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body)
                    try:
                        await self.send_response(response, send)
                    finally:
                        # Whether or not the answer could be sent.
                        await sync_to_async(_close, thread_sensitive=True)(response, pending)
            finally:
                await pending.run_on_loop()

    def _respond(self, scope: Any, body: Any) -> HttpResponseBase:
        """request_started, the middleware chain and the view, on the request's thread."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body)
        if request is None:  # a header that does not decode, a body too big: Django's answer
            return cast(HttpResponseBase, error_response)
        response = self.get_response(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        return response


def _close(response: HttpResponseBase, pending: after_answer.Pending) -> None:
    """Once the answer is sent: the work left for after it, then the response's
    close (request_finished hands the database connection back, also the one
    that work used)."""
    try:
        pending.run()
    finally:
        response.close()


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
