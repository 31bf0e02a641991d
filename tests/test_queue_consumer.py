"""The live queue socket, end to end through config.asgi.application: origin
check, session authentication from a real login cookie, the Redis channel
layer, and the consumer's per-department filtering."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.test import Client

from agents.models import Tier
from approvals import live, services
from approvals.models import Action, Department
from config.asgi import application
from tests.factories import PASSWORD, ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_ORIGIN = b"http://127.0.0.1"  # 127.0.0.1 is in ALLOWED_HOSTS by default
TIMEOUT = 5


@pytest.fixture(autouse=True)
def redis_layer(real_services: None, short_lived_db_connections: None, eager_tasks: None) -> None:
    # Groups on the in-memory layer would pass these tests without ever
    # touching Redis; make sure the messages really cross it.
    assert isinstance(get_channel_layer(), RedisChannelLayer)


def session_cookie(username: str) -> str:
    """Log in through the real login machinery and return the Cookie header."""
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def communicator(cookie: str | None = None, origin: bytes = GOOD_ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin)]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/queue/", headers=headers)


@asynccontextmanager
async def queue_socket(cookie: str) -> AsyncIterator[WebsocketCommunicator]:
    """An accepted queue socket, its hello already read."""
    socket = communicator(cookie)
    connected, code = await socket.connect(timeout=TIMEOUT)
    assert connected, f"the queue socket was refused with code {code}"
    hello = await socket.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "hello"
    try:
        yield socket
    finally:
        await socket.disconnect()


def changed(action: Action) -> dict[str, Any]:
    return {"type": "action.changed", "action_id": str(action.pk), "status": "pending"}


@pytest.fixture
def second_department(db) -> Department:
    return DepartmentFactory(name="Legal", slug="legal", leads=[UserFactory(username="lars-lead")])


def proposer(agent_slug: str, department: Department) -> Callable[[], Action]:
    """Propose one contributor-tier action of `department`'s agent, from async code."""

    @database_sync_to_async
    def _propose() -> Action:
        agent = AgentFactory(slug=agent_slug, department=department)
        grant = GrantFactory(agent=agent, action_type=ActionTypeFactory(), tier=Tier.CONTRIBUTOR)
        action, _ = services.propose(agent, grant.action_type, payload={"note": "hi"}, reasoning="Asked for.")
        return action

    return _propose


@pytest.fixture
def cookies(lead, department, second_department) -> dict[str, str]:
    return {"finance": session_cookie(lead.username), "legal": session_cookie("lars-lead")}


async def test_it_refuses_an_anonymous_socket():
    connected, code = await communicator().connect(timeout=TIMEOUT)
    # 4401 comes from QueueConsumer itself: the origin check let it through.
    assert (connected, code) == (False, 4401)


async def test_it_refuses_a_foreign_origin_even_with_a_valid_session(cookies):
    connected, _ = await communicator(cookies["finance"], origin=b"https://evil.example").connect(timeout=TIMEOUT)
    assert connected is False
    # The same cookie from an allowed origin is welcome: it was the origin.
    good = communicator(cookies["finance"])
    assert (await good.connect(timeout=TIMEOUT))[0] is True
    await good.disconnect()


async def test_it_greets_a_lead_with_the_departments_they_decide_for(cookies, department):
    socket = communicator(cookies["finance"])
    assert (await socket.connect(timeout=TIMEOUT))[0] is True
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "departments": [department.pk]}
    await socket.disconnect()


async def test_it_tells_each_lead_only_about_their_own_departments(cookies, department, second_department):
    propose_finance = proposer("refund-bot", department)
    propose_legal = proposer("contract-bot", second_department)
    async with queue_socket(cookies["finance"]) as finance, queue_socket(cookies["legal"]) as legal:
        # Legal's proposal is routed and published first: its lead hears it...
        legal_action = await propose_legal()
        assert await legal.receive_json_from(timeout=TIMEOUT) == changed(legal_action)
        # ...and Finance's first message is about Finance's own action. The
        # channel delivers in order, so Legal's would have come before it.
        finance_action = await propose_finance()
        assert await finance.receive_json_from(timeout=TIMEOUT) == changed(finance_action)
        assert await finance.receive_nothing(timeout=0.3)
        assert await legal.receive_nothing(timeout=0.3)


async def test_it_drops_a_message_about_an_action_outside_the_leads_departments(cookies, department, second_department):
    legal_action = await proposer("contract-bot", second_department)()
    async with queue_socket(cookies["finance"]) as finance:
        # A message for Legal's action lands in Finance's group (as after a
        # re-routing): the consumer re-checks and forwards nothing.
        await database_sync_to_async(live.publish_action_changed)(legal_action.pk, department.pk, "pending")
        finance_action = await proposer("refund-bot", department)()
        assert await finance.receive_json_from(timeout=TIMEOUT) == changed(finance_action)
        assert await finance.receive_nothing(timeout=0.3)
