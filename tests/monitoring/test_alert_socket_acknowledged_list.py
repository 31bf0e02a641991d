"""On /alerts/ the socket keeps the recently acknowledged list live, like
the badge: when another lead acknowledges an alert, every open alerts page
gets it moved from the open list to the acknowledged one, with who took it.
Through config.asgi.application and the Redis channel layer."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from tests.monitoring.test_alert_socket import acknowledge, raise_about, socket
from tests.pages.test_queue_consumer import TIMEOUT, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def redis_layer(real_services: None, short_lived_db_connections: None, eager_tasks: None) -> None:
    assert isinstance(get_channel_layer(), RedisChannelLayer)


def rows_of(pushed: str, tbody_id: str) -> str:
    """The rows a push swaps into <tbody id=tbody_id> (out of band); fails when it sends none."""
    found = re.search(rf'<tbody id="{tbody_id}" hx-swap-oob="true">(.*?)</tbody>', pushed, re.DOTALL)
    assert found, f"the push carries no {tbody_id}"
    return found.group(1)


async def test_an_alert_another_lead_acknowledges_moves_to_the_acknowledged_list_live(agent, lead, other_lead):
    cookie = await database_sync_to_async(session_cookie)(lead.username)
    ws = socket(cookie, "/ws/alerts/?list=1")
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    hello = await ws.receive_from(timeout=TIMEOUT)
    assert "None in the last 7 days." in rows_of(hello, "acknowledged-alert-rows")

    alert = await raise_about(agent, "Most of its dispatches fail.")
    pushed = await ws.receive_from(timeout=TIMEOUT)
    assert f'id="alert-{alert.pk}"' in rows_of(pushed, "open-alert-rows")
    assert f'id="alert-{alert.pk}"' not in rows_of(pushed, "acknowledged-alert-rows")

    await acknowledge(alert, other_lead)
    pushed = await ws.receive_from(timeout=TIMEOUT)
    assert "Nothing needs your attention." in rows_of(pushed, "open-alert-rows")
    acknowledged = rows_of(pushed, "acknowledged-alert-rows")
    assert f'<tr id="alert-{alert.pk}" class="alert severity-warning acknowledged">' in acknowledged
    assert "Most of its dispatches fail." in acknowledged
    assert "Acknowledged by omar-lead" in acknowledged
    await ws.disconnect()


async def test_other_pages_get_the_badge_alone(agent, lead, other_lead):
    cookie = await database_sync_to_async(session_cookie)(lead.username)
    ws = socket(cookie)
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    await ws.receive_from(timeout=TIMEOUT)

    alert = await raise_about(agent, "Most of its dispatches fail.")
    await ws.receive_from(timeout=TIMEOUT)
    await acknowledge(alert, other_lead)
    pushed = await ws.receive_from(timeout=TIMEOUT)
    assert 'id="alert-badge"' in pushed
    assert "acknowledged-alert-rows" not in pushed and "open-alert-rows" not in pushed
    await ws.disconnect()
