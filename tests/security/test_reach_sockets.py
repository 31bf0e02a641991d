"""Both sockets, every role (docs/access.md), through config.asgi.application
with a real session cookie and the Redis channel layer:

- /ws/queue/ joins the groups of the departments the user is a member of;
  a change to an action reaches, as a row, only those whose lanes hold it.
- /ws/alerts/ counts, on connect, the open alerts the user sees.
Anonymous sockets are closed before they are accepted."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from approvals import live
from config.asgi import application
from tests.support.reach_world import ROLES, World, build

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5

# Per role, in ROLES order: the departments the queue socket joins, whether
# the pending action's change arrives as a row, and the alert badge's count.
QUEUE_GROUPS = ("finance", "sales", "finance", "finance", "", "sales", "finance", "", None)
QUEUE_ROW = (True, False, False, True, False, False, True, False, None)
OPEN_ALERTS = (1, 0, 1, 1, 1, 1, 1, 1, None)


@pytest.fixture(autouse=True)
def _services(real_services: None, short_lived_db_connections: None) -> None:
    pass


@database_sync_to_async
def _socket(world: World, path: str) -> WebsocketCommunicator:
    """A socket with the role's real session cookie (none for anonymous)."""
    headers = [(b"origin", b"http://127.0.0.1")]
    if world.user is not None:
        client = Client()
        client.force_login(world.user)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def _department_slugs(world: World, ids: list[int]) -> str:
    from approvals.models import Department

    return " ".join(Department.objects.filter(pk__in=ids).order_by("slug").values_list("slug", flat=True))


@pytest.mark.parametrize("role", ROLES)
async def test_the_queue_socket_reaches_each_role_as_the_rule_says(role):
    world = await database_sync_to_async(build)(role)
    column = ROLES.index(role)
    socket = await _socket(world, "/ws/queue/")
    connected, code = await socket.connect(timeout=TIMEOUT)
    if world.user is None:
        assert (connected, code) == (False, 4401)
        return
    try:
        hello = await socket.receive_json_from(timeout=TIMEOUT)
        slugs = await database_sync_to_async(_department_slugs)(world, hello["departments"])
        assert slugs == QUEUE_GROUPS[column]
        if not slugs:
            return  # in no department's group: nothing is ever sent to it
        await database_sync_to_async(live.publish_action_changed)(
            world.pending.pk, world.finance.pk, world.pending.status
        )
        if "finance" not in slugs:
            return
        frame = await socket.receive_from(timeout=TIMEOUT)
        has_row = bool(re.search(rf'<tr id="action-{world.pending.pk}" class="row', frame))
        assert has_row == QUEUE_ROW[column]
    finally:
        await socket.disconnect()


def _open_count(badge: str) -> int:
    found = re.search(r'<span class="count" aria-label="(\d+) open">', badge)
    return int(found[1]) if found else 0


@pytest.mark.parametrize("role", ROLES)
async def test_the_alert_socket_counts_for_each_role_the_alerts_the_rule_shows(role):
    world = await database_sync_to_async(build)(role)
    socket = await _socket(world, "/ws/alerts/")
    connected, code = await socket.connect(timeout=TIMEOUT)
    if world.user is None:
        assert (connected, code) == (False, 4401)
        return
    try:
        expected = OPEN_ALERTS[ROLES.index(role)]
        assert _open_count(await socket.receive_from(timeout=TIMEOUT)) == expected
        if not expected:
            return  # in none of the alert's groups: nothing is ever sent to it
        # Whoever sees the alert is in one of its groups and hears when it changes.
        await database_sync_to_async(live.publish_alert_changed)(world.alert.pk, world.finance.pk, world.agent.owner_id)
        assert _open_count(await socket.receive_from(timeout=TIMEOUT)) == expected
    finally:
        await socket.disconnect()
