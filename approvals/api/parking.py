"""Long polls park in front of Django's handler, holding no thread.

Django runs each request inside asgiref's ThreadSensitiveContext: the first
sync step (a middleware's process_request) starts a thread of the request's
own, kept until the request ends. A `?wait=60` parked inside the handler
kept that idle thread and its stack for the whole wait: a thousand waiters,
a thousand threads.

So config.asgi puts ParkLongPolls in front of the handler, and a waited GET
goes through the handler twice:

1. The handler answers at once. If the action is still pending, the view
   asks to park (`ask`) instead of waiting; this middleware throws that first
   answer away. The request's thread ends with the handler.
2. It parks on the event loop (waiting.until_settled: the action's channel-layer
   group; each database read in the loop's shared executor, giving its
   connection back to the pool) until the action moves, the wait runs out
   or the client hangs up.
3. The request goes through the handler again, marked `waited`: the view
   answers as to a GET without wait, and the throttle does not count it twice.

Without this middleware in front (WSGI, Django's test client), the view
waits inside the handler, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.http import HttpRequest

from approvals.api import waiting
from approvals.models import Action
from approvals.rules.lifecycle import Status

Scope = dict[str, Any]
Message = dict[str, Any]

OFFERED = "countersign.parking"  # this middleware is in front: the view may ask to park
PARK = "countersign.park"  # the view asks: a Park
WAITED = "countersign.waited"  # the second pass: the wait is over


@dataclass(frozen=True)
class Park:
    action_id: UUID
    seconds: int


def ask(request: HttpRequest, action_id: UUID, seconds: int) -> bool:
    """From the view: park this request here. False when no ParkLongPolls is
    in front (the view then waits itself)."""
    scope = getattr(request, "scope", None)
    if not scope or not scope.get(OFFERED):
        return False
    # The scope is the dict the middleware passed in: the one way back to it.
    scope[PARK] = Park(action_id, seconds)
    return True


def waited(request: HttpRequest) -> bool:
    """Whether this is the second pass of a parked request."""
    return bool((getattr(request, "scope", None) or {}).get(WAITED))


def _may_wait(scope: Scope) -> bool:
    return scope["type"] == "http" and scope.get("method") == "GET" and b"wait=" in scope.get("query_string", b"")


class ParkLongPolls:
    """ASGI middleware: parks waited GETs outside the wrapped app (see above).
    Every other request goes straight through."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if not _may_wait(scope):
            await self.app(scope, receive, send)
            return
        client = _Client(receive)
        if not await client.read_request():
            return
        try:
            park = await self._first_pass(scope, client, send)
            if park is None or await client.hangs_up_during(_until_settled(park)):
                return
            await self.app({**scope, WAITED: True}, client.replay(), send)
        finally:
            client.stop_listening()

    async def _first_pass(self, scope: Scope, client: _Client, send: Any) -> Park | None:
        """The handler's answer, sent on unless the view asked to park: then
        the Park, the answer dropped (nothing of it is kept while parked)."""
        first_pass = {**scope, OFFERED: True}
        answer = _HeldAnswer()
        await self.app(first_pass, client.replay(), answer.send)
        park: Park | None = first_pass.get(PARK)
        if park is None:
            await answer.forward(send)
        return park


async def _until_settled(park: Park) -> None:
    await waiting.until_settled(park.action_id, park.seconds, reads_pending(park.action_id))


def reads_pending(action_id: UUID) -> waiting.IsPending:
    """Whether the action is still pending, read off the request's thread."""

    def still_pending() -> bool:
        return Action.objects.filter(pk=action_id, status=Status.PENDING).exists()

    return lambda: waiting.in_shared_thread(still_pending)


class _HeldAnswer:
    """The first pass's answer, held until it is known whether it is the one to send."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    async def forward(self, send: Any) -> None:
        for message in self.messages:
            await send(message)


class _Client:
    """The request's `receive`, read by one task: the body, replayed to each
    pass of the handler; then only whether the client has hung up."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._body: list[Message] = []
        self.gone = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    async def read_request(self) -> bool:
        """The whole body (a GET's is empty). False when the client left meanwhile."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return False
            self._body.append(message)
            if not message.get("more_body", False):
                break
        self._listener = asyncio.create_task(self._listen())
        return True

    async def _listen(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone.set()

    def replay(self) -> Any:
        """A `receive` for one pass: the body, then a disconnect once the client is gone."""
        messages = iter(self._body)

        async def receive() -> Message:
            message = next(messages, None)
            if message is not None:
                return message
            await self.gone.wait()
            return {"type": "http.disconnect"}

        return receive

    async def hangs_up_during(self, work: Any) -> bool:
        """Run `work`; True (and `work` cancelled, so it leaves its groups) if the client hangs up first."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server stops
            task.cancel()
            raise
        finally:
            gone.cancel()
        if task.done():
            task.result()
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    def stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
