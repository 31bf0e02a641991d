"""A change to what the API caches reaches every server within a second.

Each server keeps the agent keys (with their agents) and the action types it
reads in a per-process cache (agents.fresh). Here a second server, uvicorn in
a process of its own on the test database and Redis, has cached them by
answering once; the change is then made in this process through the real
door (the service the admin calls, a model save, a queryset update), and the
other server is asked again and again until it answers differently: within
a second of the commit, or the test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from agents import services as agent_services
from agents.models import Agent, AgentKey, Tier
from approvals.models import ActionType, Risk
from audit.log import Actor
from tests.api.test_api_keys import new_key
from tests.api.test_api_proposals import ACTIONS, granted, refund
from tests.support.servers import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN_SECONDS = 1.0
ME = "/api/v1/me/"


@pytest.fixture(scope="module")
def other_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[httpx.Client]:
    """Another server of the same deployment: its own process, so its own caches."""
    with django_db_blocker.unblock():
        db = connection.settings_dict
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "AUDIT_SEALING": "inline",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env)  # noqa: S603  (our own command line)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        wait_for(lambda: _answers(client), timeout=30, what="the second server to answer")
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=15)


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get(ME).status_code == 401
    except httpx.TransportError:
        return False


def refused_within(ask: Callable[[], bool]) -> float:
    """Seconds from now until `ask()` (a request to the other server) says the change is
    seen; asked again at once each time, until the deadline."""
    started = time.monotonic()
    while not ask():
        elapsed = time.monotonic() - started
        assert elapsed < WITHIN_SECONDS, f"The other server still served the old row after {elapsed:.2f} s."
    return time.monotonic() - started


def as_agent(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


def caught_up(other_server: httpx.Client, agent: Agent, raw_key: str) -> None:
    """Make the other server current: have it keep the key, announce a change it can
    show (the agent's new name) and ask until it does. The key is kept first so
    that the new name proves the other server read the new generation (a key it
    had never seen would be read afresh anyway, while a row kept from an earlier
    test, truncated since without an announcement, is still served). From then on
    it holds the latest generation, so only the change under test, if announced,
    can make it read afresh."""
    assert other_server.get(ME, headers=as_agent(raw_key)).json()["name"] == agent.name
    agent.name = f"{agent.name} (renamed)"
    agent.save()
    refused_within(lambda: other_server.get(ME, headers=as_agent(raw_key)).json()["name"] == agent.name)


def test_a_revoked_key_is_refused_by_the_other_server_within_a_second(other_server, agent):
    raw = new_key(agent)
    caught_up(other_server, agent, raw)  # the key, cached there
    key = AgentKey.objects.get(prefix=raw[:12])
    agent_services.revoke_key(key, actor=Actor.system("tests"))
    refused_within(lambda: other_server.get(ME, headers=as_agent(raw)).status_code == 401)


def test_a_suspended_agents_proposals_are_blocked_by_the_other_server_within_a_second(other_server, agent):
    granted(agent, tier=Tier.EXECUTOR)
    raw = new_key(agent)
    caught_up(other_server, agent, raw)
    assert other_server.get(ME, headers=as_agent(raw)).json()["status"] == "active"
    agent_services.suspend_agent(agent, actor=Actor.system("tests"), reason="Misbehaving.")
    refused_within(lambda: other_server.get(ME, headers=as_agent(raw)).json()["status"] == "suspended")
    answer = other_server.post(ACTIONS, json=refund(), headers=as_agent(raw))
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "agent_suspended")


def test_an_action_type_saved_anew_is_read_afresh_by_the_other_server_within_a_second(other_server, agent):
    action_type = granted(agent, tier=Tier.EXECUTOR)
    raw = new_key(agent)
    caught_up(other_server, agent, raw)
    assert other_server.post(ACTIONS, json=refund(), headers=as_agent(raw)).status_code == 201  # the type, cached
    action_type.payload_schema = {**action_type.payload_schema, "required": ["order", "amount", "reason"]}
    action_type.save()  # as the admin's change form does
    refused_within(lambda: other_server.post(ACTIONS, json=refund(), headers=as_agent(raw)).status_code == 400)


def test_a_bulk_update_of_action_types_reaches_the_other_server_within_a_second(other_server, agent):
    granted(agent, tier=Tier.EXECUTOR)
    raw = new_key(agent)
    caught_up(other_server, agent, raw)
    assert other_server.post(ACTIONS, json=refund(), headers=as_agent(raw)).json()["status"] == "approved"
    ActionType.objects.filter(slug="payments.refund").update(risk=Risk.HIGH)  # no signal: the queryset announces
    refused_within(
        lambda: other_server.post(ACTIONS, json=refund(), headers=as_agent(raw)).json()["status"] == "pending"
    )
