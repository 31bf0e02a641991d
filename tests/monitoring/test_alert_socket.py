"""The alert badge's socket, end to end through config.asgi.application and
the Redis channel layer: session authentication, scoping to the alerts the
user sees, and the badge (and, on the alerts page, the list) pushed live."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer

from approvals.models import AlertKind
from approvals.monitoring import alerts
from config.asgi import application
from tests.pages.test_queue_consumer import GOOD_ORIGIN, TIMEOUT, session_cookie
from tests.support.factories import AdminFactory, AgentFactory, DepartmentFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def redis_layer(real_services: None, short_lived_db_connections: None, eager_tasks: None) -> None:
    assert isinstance(get_channel_layer(), RedisChannelLayer)


def socket(cookie: str | None, path: str = "/ws/alerts/") -> WebsocketCommunicator:
    headers = [(b"origin", GOOD_ORIGIN)] + ([(b"cookie", cookie.encode())] if cookie else [])
    return WebsocketCommunicator(application, path, headers=headers)


@database_sync_to_async
def raise_about(agent, message: str):
    # Committed (transactional test), so the after-commit publish really goes out.
    return alerts.raise_alert(
        AlertKind.DISPATCH_ERRORS, severity="warning", message=message, department=agent.department, agent=agent
    )


@database_sync_to_async
def acknowledge(alert, user) -> None:
    alerts.acknowledge(alert.pk, user=user)


async def test_anonymous_sockets_are_refused():
    connected, code = await socket(None).connect(timeout=TIMEOUT)
    assert (connected, code) == (False, 4401)


@pytest.fixture
def stranger_agent(db):
    return AgentFactory(department=DepartmentFactory(slug="support"))


async def test_a_lead_sees_the_badge_change_live_and_only_for_their_departments(agent, lead, stranger_agent):
    cookie = await database_sync_to_async(session_cookie)(lead.username)
    ws = socket(cookie)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    hello = await ws.receive_from(timeout=TIMEOUT)
    assert 'id="alert-badge"' in hello and 'class="count"' not in hello  # nothing open yet

    alert = await raise_about(agent, "Most of its dispatches fail.")
    pushed = await ws.receive_from(timeout=TIMEOUT)
    assert 'hx-swap-oob="true"' in pushed and '<span class="count" aria-label="1 open">1</span>' in pushed
    assert "open-alert-rows" not in pushed  # the list goes only to the alerts page

    await raise_about(stranger_agent, "Not this lead's business.")
    assert await ws.receive_nothing(timeout=0.5)

    await acknowledge(alert, lead)
    pushed = await ws.receive_from(timeout=TIMEOUT)
    assert 'class="count"' not in pushed
    await ws.disconnect()


async def test_the_owner_and_the_alerts_page_get_the_list(agent, owner):
    cookie = await database_sync_to_async(session_cookie)(owner.username)
    ws = socket(cookie, "/ws/alerts/?list=1")
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    await ws.receive_from(timeout=TIMEOUT)

    await raise_about(agent, "Most of its dispatches fail.")
    pushed = await ws.receive_from(timeout=TIMEOUT)
    assert '<tbody id="open-alert-rows" hx-swap-oob="true">' in pushed
    assert "Most of its dispatches fail." in pushed
    await ws.disconnect()


async def test_an_admin_hears_of_every_department(stranger_agent):
    admin = await database_sync_to_async(AdminFactory)(username="ada-admin")
    cookie = await database_sync_to_async(session_cookie)(admin.username)
    ws = socket(cookie)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    await ws.receive_from(timeout=TIMEOUT)

    await raise_about(stranger_agent, "Anywhere.")
    assert '<span class="count" aria-label="1 open">1</span>' in await ws.receive_from(timeout=TIMEOUT)
    await ws.disconnect()
