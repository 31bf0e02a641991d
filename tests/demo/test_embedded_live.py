"""On the embedded default the channel layer lives in the server's memory.
A change made outside the server's event loop (the scheduler thread, an
in-process task) must still wake a waiting agent at once."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from channels.layers import channel_layers

from agents.services import issue_key
from approvals import live, services
from approvals.rules.lifecycle import Status
from audit.log import Actor
from tests.support.servers import wait_for


@pytest.fixture
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def test_it_wakes_a_long_poll_when_an_action_expires_outside_the_server(in_memory_layer, asgi_server, agent, propose):
    action = propose()
    _, key = issue_key(agent, actor=Actor.system())
    url = f"http://127.0.0.1:{asgi_server.port}/api/v1/actions/{action.pk}/?wait=20"
    answers: list[tuple[float, dict]] = []

    def long_poll() -> None:
        response = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        answers.append((time.monotonic(), response.json()))

    waiter = threading.Thread(target=long_poll)
    waiter.start()
    # Parked on the server's loop: its channel has joined the action's group.
    layer = channel_layers["default"]
    wait_for(lambda: layer.groups.get(live.action_group(action.pk)), what="the long poll to subscribe")
    expired_at = time.monotonic()
    services.expire(action.pk)  # this thread runs no event loop of the server's
    waiter.join(timeout=25)

    answered_at, body = answers[0]
    assert body["status"] == Status.EXPIRED
    assert answered_at - expired_at < 2.0
