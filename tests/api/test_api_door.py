"""The agent API's own door (config.agent_api), through the real ASGI app:
the sync work of its requests runs on threads kept from one request to the
next, a few at once (the others wait for one without a thread, and a body
still arriving holds none), its answers pass only the middleware an API of
keys needs, and a proposal's live push and routing task go out after its
answer, even when the agent hangs up before it (approvals.after_answer)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_started

from approvals.models import Action
from audit.models import AuditEvent
from config.agent_api import Lanes
from tests.api.test_api_keys import new_key
from tests.api.test_api_proposals import ACTIONS, granted, refund
from tests.support.servers import await_for, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def request_threads() -> Iterator[list[str]]:
    """The name of the thread each request's sync work started on (Django sends
    request_started on the thread its sync code runs on)."""
    names: list[str] = []

    def note(**_: Any) -> None:
        names.append(threading.current_thread().name)

    request_started.connect(note)
    yield names
    request_started.disconnect(note)


def test_it_serves_requests_one_after_another_on_the_same_kept_thread(asgi_server, agent, request_threads):
    granted(agent)
    headers = {"Authorization": f"Bearer {new_key(agent)}"}
    with httpx.Client(base_url=asgi_server.url, headers=headers, timeout=10) as client:
        for n in range(6):
            response = client.post(ACTIONS, json=refund(), headers={"Idempotency-Key": f"door-{n}"})
            assert response.status_code == 201, response.text[:300]
            assert client.get("/api/v1/me/").status_code == 200
    # Django's own door starts a new thread for every request, 12 here.
    assert len(request_threads) == 12
    assert len(set(request_threads)) == 1, request_threads


def test_it_runs_at_most_its_lanes_at_once_and_the_others_wait_on_the_loop():
    lanes = Lanes(limit=2)

    async def burst(requests: int) -> tuple[int, set[int]]:
        lock, release = threading.Lock(), threading.Event()
        running, most, threads = 0, 0, set()

        def sync_part() -> None:  # a view's work, on the request's thread
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
                threads.add(threading.get_ident())
            release.wait(10)
            with lock:
                running -= 1

        arrived = 0

        async def request() -> None:
            nonlocal arrived
            arrived += 1  # and, in the same step, takes a lane or waits at the gate for one
            async with lanes.lane():
                await sync_to_async(sync_part, thread_sensitive=True)()

        tasks = [asyncio.create_task(request()) for _ in range(requests)]
        while running < lanes.limit or arrived < requests:
            await asyncio.sleep(0.01)
        assert running == lanes.limit  # the others wait, without a thread
        release.set()
        await asyncio.gather(*tasks)
        return most, threads

    for _ in range(2):  # a second event loop gets a gate of its own
        most, threads = asyncio.run(burst(5))
        assert most == 2
        assert len(threads) == 2, threads


def test_no_lane_at_all_is_refused_at_start():
    started = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={**os.environ, "AGENT_API_THREADS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "AGENT_API_THREADS=0: at least 1" in started.stderr


def test_bodies_still_arriving_hold_no_lane(asgi_server, agent):
    from config.asgi import agent_api_door  # as asgi_server does: Django set up first

    raw = new_key(agent)
    granted(agent)

    async def slow_uploads_then_a_request() -> int:
        uploads = []
        for _ in range(agent_api_door.app.lanes.limit + 1):
            _reader, writer = await asyncio.open_connection("127.0.0.1", asgi_server.port)
            writer.write(
                f"POST {ACTIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {raw}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
            )
            await writer.drain()
            uploads.append(writer)
        async with httpx.AsyncClient(base_url=asgi_server.url, headers={"Authorization": f"Bearer {raw}"}) as client:
            answer = await client.get("/api/v1/me/", timeout=10)
        for writer in uploads:
            writer.transport.abort()
        return answer.status_code

    assert asyncio.run(slow_uploads_then_a_request()) == 200


def test_it_answers_with_the_security_headers_and_nothing_of_sessions_or_pages(asgi_server, agent):
    granted(agent)
    raw = new_key(agent)
    with httpx.Client(base_url=asgi_server.url, headers={"Authorization": f"Bearer {raw}"}, timeout=10) as client:
        answer = client.post(ACTIONS, json=refund(), headers={"User-Agent": "door-test/1"})
        slashless = client.get("/api/v1/me", follow_redirects=False)
        docs = client.get("/api/docs/")
    assert answer.status_code == 201, answer.text[:300]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"
    for page_header in ("Set-Cookie", "Content-Security-Policy", "X-Frame-Options", "Vary"):
        assert page_header not in answer.headers, page_header
    # CommonMiddleware stays: a path without its slash is redirected, as before.
    assert slashless.status_code == 301 and slashless.headers["Location"] == "/api/v1/me/"
    # The docs page, outside /api/v1/, keeps the full chain and its Content-Security-Policy.
    assert "Content-Security-Policy" in docs.headers
    # The audit's request context still names who asked, from where.
    proposed = AuditEvent.objects.get(verb="action.proposed")
    assert proposed.context["ip"] == "127.0.0.1"
    assert proposed.context["user_agent"] == "door-test/1"
    assert raw.startswith(proposed.context["key_prefix"])


@pytest.fixture
def held_publish(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[str]]]:
    """The channel layer's sends, held until the test lets them go (on the
    server's event loop, which goes on serving meanwhile); what they sent."""
    from approvals import live

    release, published = threading.Event(), []
    layer = live.get_channel_layer()

    class HeldLayer:
        def __getattr__(self, name: str) -> Any:
            return getattr(layer, name)

        async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
            published.extend(message["action_id"] for _, message in sends)
            await layer.group_send_many(sends)

    monkeypatch.setattr(live, "get_channel_layer", HeldLayer)
    yield release, published
    release.set()


def test_a_proposal_is_answered_before_its_live_update_and_routing_go_out(asgi_server, agent, held_publish):
    release, published = held_publish
    granted(agent)
    headers = {"Authorization": f"Bearer {new_key(agent)}"}
    with httpx.Client(base_url=asgi_server.url, headers=headers, timeout=10) as client:
        # Were the publish in the answer's way, this would wait for it and time out.
        answer = client.post(ACTIONS, json=refund())
    assert answer.status_code == 201, answer.text[:300]
    action_id = answer.json()["id"]
    assert published == []
    release.set()
    # Then the leads' screens are told and the action routed.
    wait_for(lambda: published == [action_id], what="the live update")
    wait_for(lambda: Action.objects.get(pk=action_id).routed_at, what="the routing task")


async def test_the_work_after_the_answer_still_runs_when_the_agent_hangs_up_before_it(
    transactional_db, real_services, short_lived_db_connections, eager_tasks, agent, held_publish
):
    """The agent hangs up while its proposal is being recorded: the view goes
    on to commit, and the answer cannot be sent (this server raises, as
    some do; uvicorn drops it). The work after the answer runs all the same."""
    from config.asgi import application

    release, published = held_publish
    release.set()
    await sync_to_async(granted)(agent)
    raw = await sync_to_async(new_key)(agent)
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        if not sent:
            sent.append("body")
            return {"type": "http.request", "body": json.dumps(refund()).encode(), "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        raise OSError("the agent hung up")

    with pytest.raises(OSError):
        await application(_post_scope(ACTIONS, raw), receive, send)
    action = await Action.objects.aget()
    # Both go out from the loop once their gatherings' windows close.
    await await_for(lambda: published == [str(action.pk)], what="the live update")
    await await_for(lambda: Action.objects.filter(pk=action.pk, routed_at__isnull=False).aexists(), what="the routing")


async def test_a_request_django_cannot_read_is_answered_400_through_the_door():
    from config.asgi import application

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {**_post_scope(ACTIONS, "cs_unused"), "method": "GET", "query_string": b"page=\xff"}
    await application(scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400


def _post_scope(path: str, raw_key: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                    (b"authorization", f"Bearer {raw_key}".encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
