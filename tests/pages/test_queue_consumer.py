"""The live queue socket, end to end through config.asgi.application: origin
check, session authentication from a real login cookie, the Redis channel
layer, the consumer's per-department filtering, and the HTML it pushes
(rows from the page's own partials, removals, counters)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.test import Client
from django.utils import timezone

from agents.models import Tier
from approvals import live, services
from approvals.models import Action, Department
from config.asgi import application
from tests.support.factories import (
    PASSWORD,
    ActionTypeFactory,
    AgentFactory,
    DepartmentFactory,
    GrantFactory,
    UserFactory,
)

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


def communicator(
    cookie: str | None = None, origin: bytes = GOOD_ORIGIN, path: str = "/ws/queue/"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin)]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@asynccontextmanager
async def queue_socket(cookie: str, path: str = "/ws/queue/") -> AsyncIterator[WebsocketCommunicator]:
    """An accepted queue socket, its hello already read."""
    socket = communicator(cookie, path=path)
    connected, code = await socket.connect(timeout=TIMEOUT)
    assert connected, f"the queue socket was refused with code {code}"
    hello = await socket.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "hello"
    try:
        yield socket
    finally:
        await socket.disconnect()


def pushed_rows(html: str) -> list[str]:
    """The ids of the rows a pushed frame inserts or replaces."""
    return re.findall(r'<tr id="action-([0-9a-f-]{36})" class="row', html)


def removed_rows(html: str) -> list[str]:
    return re.findall(r'<tr id="action-([0-9a-f-]{36})" data-gone></tr>', html)


def pending_count(html: str) -> int:
    return int(re.search(r'<strong id="pending-count">(\d+)</strong>', html)[1])


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
        assert pushed_rows(await legal.receive_from(timeout=TIMEOUT)) == [str(legal_action.pk)]
        # ...and Finance's first message is about Finance's own action. The
        # channel delivers in order, so Legal's would have come before it.
        finance_action = await propose_finance()
        assert pushed_rows(await finance.receive_from(timeout=TIMEOUT)) == [str(finance_action.pk)]
        assert await finance.receive_nothing(timeout=0.3)
        assert await legal.receive_nothing(timeout=0.3)


async def test_it_drops_a_message_about_an_action_outside_the_leads_departments(cookies, department, second_department):
    legal_action = await proposer("contract-bot", second_department)()
    async with queue_socket(cookies["finance"]) as finance:
        # A message for Legal's action lands in Finance's group (as after a
        # re-routing): the consumer re-checks and forwards nothing.
        await database_sync_to_async(live.publish_action_changed)(legal_action.pk, department.pk, "pending")
        finance_action = await proposer("refund-bot", department)()
        assert pushed_rows(await finance.receive_from(timeout=TIMEOUT)) == [str(finance_action.pk)]
        assert await finance.receive_nothing(timeout=0.3)


# ---------------------------------------------------------------- the HTML it pushes


async def test_it_pushes_the_row_the_page_renders_with_the_counters(cookies, department):
    async with queue_socket(cookies["finance"]) as finance:
        action = await proposer("refund-bot", department)()
        html = await finance.receive_from(timeout=TIMEOUT)

    # Appended to the pending table, out of band; queue.js puts it in order.
    assert html.startswith('<tbody hx-swap-oob="beforeend:#pending-rows">')
    assert 'id="queue-counters" class="counters" hx-swap-oob="true"' in html
    assert pending_count(html) == 1
    # The same partial as the page: compare the row's opening tag and cells.
    page = Client()
    page.cookies.load(cookies["finance"])
    page_html = (await database_sync_to_async(page.get)("/queue/")).content.decode()
    assert row_head(html, action) == row_head(page_html, action)
    assert "Refund Bot" in html and action.action_type.slug in html and 'class="approve"' in html


def row_head(html: str, action: Action) -> str:
    """The row from its id to its reasoning cell: what does not depend on the
    request (the CSRF field) or the second it was rendered (ages)."""
    start = html.index(f'<tr id="action-{action.pk}"')
    return html[start : html.index('<td class="age">', start)]


async def test_it_pushes_a_removal_when_an_action_is_decided(cookies, department, lead):
    async with queue_socket(cookies["finance"]) as finance:
        action = await proposer("refund-bot", department)()
        await finance.receive_from(timeout=TIMEOUT)

        await database_sync_to_async(services.approve)(action.pk, lead)
        html = await finance.receive_from(timeout=TIMEOUT)

    assert removed_rows(html) == [str(action.pk)]
    assert pushed_rows(html) == []
    assert pending_count(html) == 0


async def test_it_shows_a_backup_approver_an_action_only_once_it_escalated(department):
    backup = await database_sync_to_async(UserFactory)(username="bea-backup")
    await database_sync_to_async(department.backup_approvers.add)(backup)
    cookie = await database_sync_to_async(session_cookie)("bea-backup")
    async with queue_socket(cookie) as socket:
        action = await proposer("refund-bot", department)()
        # She hears of it (her socket listens to Finance) but may not see it yet.
        html = await socket.receive_from(timeout=TIMEOUT)
        assert pushed_rows(html) == [] and removed_rows(html) == [str(action.pk)]

        await database_sync_to_async(escalate_now)(action)
        assert pushed_rows(await socket.receive_from(timeout=TIMEOUT)) == [str(action.pk)]


def escalate_now(action: Action) -> None:
    Action.objects.filter(pk=action.pk).update(sla_deadline=timezone.now() - timedelta(seconds=1))
    assert services.escalate(action.pk) is not None


async def test_it_pushes_shadowed_actions_to_the_shadow_lane_only(cookies, department):
    @database_sync_to_async
    def propose_shadowed() -> Action:
        agent = AgentFactory(slug="observer-bot", department=department)
        grant = GrantFactory(agent=agent, action_type=ActionTypeFactory(), tier=Tier.OBSERVER)
        action, _ = services.propose(agent, grant.action_type, payload={"note": "hi"}, reasoning="Watching.")
        return action

    async with (
        queue_socket(cookies["finance"]) as pending_lane,
        queue_socket(cookies["finance"], path="/ws/queue/?lane=shadow") as shadow_lane,
    ):
        action = await propose_shadowed()
        shadow_html = await shadow_lane.receive_from(timeout=TIMEOUT)
        pending_html = await pending_lane.receive_from(timeout=TIMEOUT)

    assert shadow_html.startswith('<tbody hx-swap-oob="beforeend:#shadow-rows">')
    assert pushed_rows(shadow_html) == [str(action.pk)] and "Would approve" in shadow_html
    # The pending lane only updates its counters (the shadow tab's count).
    assert pushed_rows(pending_html) == []
    assert 'Shadow lane <span class="count">1</span>' in pending_html


async def test_it_keeps_an_idle_socket_alive(cookies, department):
    # Longer than one blocking pop of channels_redis (5 s): the Redis
    # client's read time-out must outlast it, or the idle consumer dies.
    async with queue_socket(cookies["finance"]) as finance:
        await asyncio.sleep(6)
        action = await proposer("refund-bot", department)()
        assert pushed_rows(await finance.receive_from(timeout=TIMEOUT)) == [str(action.pk)]


async def test_it_pushes_the_first_approval_of_a_critical_action(cookies, department, other_lead):
    @database_sync_to_async
    def propose_critical() -> Action:
        agent = AgentFactory(slug="records-bot", department=department)
        grant = GrantFactory(agent=agent, action_type=ActionTypeFactory(risk="critical"), tier=Tier.CONTRIBUTOR)
        action, _ = services.propose(agent, grant.action_type, payload={"note": "hi"}, reasoning="Erase.")
        return action

    async with queue_socket(cookies["finance"]) as finance:
        action = await propose_critical()
        await finance.receive_from(timeout=TIMEOUT)

        await database_sync_to_async(services.approve)(action.pk, other_lead)
        assert await finance.receive_nothing(timeout=1) is False, "no push after the first approval"
        assert "1 of 2 approvals" in await finance.receive_from(timeout=TIMEOUT)
