"""Closed sockets leave their channel-layer groups: lead pages (a queue and
an alert socket each) dropped all at once, each with a TCP reset as a crashed
browser or a lost network leaves them, leave no membership behind within
seconds, even on fewer Redis connections than sockets leaving."""

from __future__ import annotations

import asyncio

import websockets
from django.test import Client

from tests.support import groups
from tests.support.servers import wait_for

PAGES = 15
LEAVE_TIMEOUT = 5.0  # "within seconds"


def test_sockets_dropped_at_once_leave_every_group_within_seconds(asgi_server, department, lead, settings):
    groups.with_pool_of(settings, 3)
    browser = Client()
    browser.force_login(lead)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    ws_url = asgi_server.url.replace("http://", "ws://")
    before = groups.total()

    async def open_pages_then_drop_them() -> int:
        sockets = []
        for _ in range(PAGES):
            for path in ("/ws/queue/", "/ws/alerts/"):
                socket = await websockets.connect(
                    ws_url + path, origin=asgi_server.url, additional_headers={"Cookie": cookie}
                )
                await asyncio.wait_for(socket.recv(), 10)  # the hello or the badge: it is in its groups
                sockets.append(socket)
        joined = groups.total()
        for socket in sockets:
            socket.transport.abort()
        return joined

    joined = asyncio.run(open_pages_then_drop_them())
    # Each alert socket is in the lead's own and the department's alert groups;
    # the queue sockets hear through their process's one membership of the
    # department's group (approvals.pages.fanout).
    assert joined - before >= 2 * PAGES + 1
    wait_for(lambda: groups.total() == before, timeout=LEAVE_TIMEOUT, what="the dropped sockets to leave their groups")
