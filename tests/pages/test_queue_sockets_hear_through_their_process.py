"""The live queue's sockets hear of changes through their process
(approvals.pages.fanout): a department's channel-layer group holds one
member per process however many sockets are open, each change reaches every
socket of the department once and no other, a slow socket holds up no
other and still gets its frames in order, the membership goes with the
last socket, is renewed while sockets stay, and a layer lost mid-session
closes the sockets with 1013 so their pages reconnect and re-sync.

On the configured layer: Redis in the first run, the in-memory layer of the
embedded default in the second."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import redis.exceptions
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator

from agents.models import Tier
from approvals import live, services
from approvals.models import Action, Department
from approvals.pages import fanout
from approvals.pages.consumers import QueueConsumer
from approvals.pages.socket_outage import TRY_AGAIN_LATER
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

TIMEOUT = 5


@pytest.fixture(autouse=True)
def _connections(short_lived_db_connections: None) -> None:
    pass


@pytest.fixture
def legal(db) -> Department:
    return DepartmentFactory(name="Legal", slug="legal", leads=[UserFactory(username="lars-lead")])


@asynccontextmanager
async def queue_socket(user, path: str = "/ws/queue/", app: Any = None) -> AsyncIterator[WebsocketCommunicator]:
    """An accepted queue socket of `user`, its hello read."""
    socket = WebsocketCommunicator(app or QueueConsumer.as_asgi(), path)
    socket.scope["user"] = user
    connected, code = await socket.connect(timeout=TIMEOUT)
    assert connected, f"the queue socket was refused with code {code}"
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    try:
        yield socket
    finally:
        await socket.disconnect()


def proposer(department: Department) -> Callable[[], Action]:
    @database_sync_to_async
    def _propose() -> Action:
        agent = AgentFactory(department=department)
        grant = GrantFactory(agent=agent, action_type=ActionTypeFactory(), tier=Tier.CONTRIBUTOR)
        action, _ = services.propose(agent, grant.action_type, payload={"note": "hi"}, reasoning="Asked for.")
        return action

    return _propose


def rows_in(frame: str) -> list[str]:
    return re.findall(r'<tr id="action-([0-9a-f-]{36})" class="row', frame)


async def group_members(group: str) -> dict[str, float]:
    """The group's members in the configured layer, with when each was added."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return dict(layer.groups.get(group, {}))
    members = await layer.connection(layer.consistent_hash(group)).zrange(_key(group), 0, -1, withscores=True)
    return {name.decode(): score for name, score in members}


async def forget(group: str) -> None:
    """Start from an empty group: Redis outlives a test run, and a run stopped
    half-way leaves its process's membership behind for a day."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        layer.groups.pop(group, None)
    else:
        await layer.connection(layer.consistent_hash(group)).delete(_key(group))


def _key(group: str) -> str:
    return f"{get_channel_layer().prefix}:group:{group}"


async def test_a_change_reaches_every_socket_of_its_department_once_and_no_other(department, lead, other_lead, legal):
    lars = await database_sync_to_async(legal.leads.get)()
    both = await database_sync_to_async(UserFactory)(username="bo-both")
    await database_sync_to_async(department.leads.add)(both)
    await database_sync_to_async(legal.leads.add)(both)
    async with AsyncExitStack() as sockets:
        finance = [
            await sockets.enter_async_context(queue_socket(lead)),
            await sockets.enter_async_context(queue_socket(lead)),  # a second tab
            await sockets.enter_async_context(queue_socket(other_lead)),
        ]
        legal_only = await sockets.enter_async_context(queue_socket(lars))
        of_both = await sockets.enter_async_context(queue_socket(both))

        action = await proposer(department)()
        for socket in [*finance, of_both]:
            assert rows_in(await socket.receive_from(timeout=TIMEOUT)) == [str(action.pk)]

        contract = await proposer(legal)()
        for socket in (legal_only, of_both):
            assert rows_in(await socket.receive_from(timeout=TIMEOUT)) == [str(contract.pk)]
        # Legal's frame came after Finance's on the socket of both: had anything
        # been sent twice or astray, it would be waiting by now.
        for socket in [*finance, legal_only, of_both]:
            assert await socket.receive_nothing(timeout=0.2)


class Stalling:
    """A queue consumer whose connection stops taking frames while `stalled`
    is set, as a slow reader's does once its buffer is full."""

    def __init__(self) -> None:
        self.app = QueueConsumer.as_asgi()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        async def send_when_flowing(message: dict) -> None:
            if message["type"] == "websocket.send":
                await self.flowing.wait()
            await send(message)

        await self.app(scope, receive, send_when_flowing)


async def test_a_slow_socket_holds_up_no_other_and_gets_its_frames_in_order(department, lead, other_lead):
    slow = Stalling()
    async with queue_socket(lead, app=slow) as slow_socket, queue_socket(other_lead) as quick_socket:
        slow.flowing.clear()
        propose = proposer(department)
        actions = [await propose() for _ in range(3)]

        for action in actions:
            assert rows_in(await quick_socket.receive_from(timeout=TIMEOUT)) == [str(action.pk)]
        assert await slow_socket.receive_nothing(timeout=0.2)

        slow.flowing.set()
        for action in actions:
            assert rows_in(await slow_socket.receive_from(timeout=TIMEOUT)) == [str(action.pk)]


async def test_a_group_holds_the_process_once_and_not_after_its_last_socket(department, lead, other_lead, legal):
    lars = await database_sync_to_async(legal.leads.get)()
    finance_group, legal_group = live.department_group(department.pk), live.department_group(legal.pk)
    for group in (finance_group, legal_group):
        await forget(group)

    async with queue_socket(lars):
        async with queue_socket(lead), queue_socket(lead), queue_socket(other_lead):
            assert len(await group_members(finance_group)) == 1
            assert len(await group_members(legal_group)) == 1
        # The last Finance socket closed: its group is empty at once.
        assert await group_members(finance_group) == {}
        assert len(await group_members(legal_group)) == 1
    assert await group_members(legal_group) == {}


async def test_a_process_renews_its_membership_while_sockets_stay_open(department, lead, monkeypatch):
    monkeypatch.setattr(fanout, "GROUP_REFRESH_SECONDS", 0.05)
    group = live.department_group(department.pk)
    await forget(group)
    async with queue_socket(lead) as socket:
        [(channel, added)] = (await group_members(group)).items()
        deadline = time.monotonic() + TIMEOUT
        while (await group_members(group))[channel] <= added:
            assert time.monotonic() < deadline, "the membership was never renewed"
            await asyncio.sleep(0.05)
        # And it still hears its department.
        action = await proposer(department)()
        assert rows_in(await socket.receive_from(timeout=TIMEOUT)) == [str(action.pk)]


async def test_a_layer_lost_mid_session_closes_the_sockets_with_try_again_later(department, lead, monkeypatch):
    async def unreachable(channel: str) -> dict:
        raise redis.exceptions.ConnectionError("Connection refused")

    # Joining the group works; reading the process's channel then fails.
    monkeypatch.setattr(get_channel_layer(), "receive", unreachable)
    socket = WebsocketCommunicator(QueueConsumer.as_asgi(), "/ws/queue/")
    socket.scope["user"] = lead
    assert (await socket.connect(timeout=TIMEOUT))[0]
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "hello"

    assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": TRY_AGAIN_LATER}
    await socket.disconnect(timeout=TIMEOUT)
