"""The agent API's own door (config.agent_api), through the real ASGI app:
the sync work of its requests runs on threads kept from one request to the
next, and its answers pass only the middleware an API of keys needs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.signals import request_started

from audit.models import AuditEvent
from tests.api.test_api_keys import new_key
from tests.api.test_api_proposals import ACTIONS, granted, refund

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
