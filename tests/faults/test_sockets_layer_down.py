"""Both live sockets while the channel layer does not answer: a Redis layer
pointed at a port nobody listens on. The socket is accepted and closed with
1013 "try again later" (approvals.pages.socket_outage), which browsers answer by
reconnecting after a pause, never an error on the handshake."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from approvals.pages.consumers import AlertConsumer, QueueConsumer
from approvals.pages.socket_outage import TRY_AGAIN_LATER
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5
SOCKETS = [(QueueConsumer, "/ws/queue/"), (AlertConsumer, "/ws/alerts/")]


@pytest.fixture
def layer_down(settings, short_lived_db_connections, department) -> None:
    # The lead leads a department: their queue socket has groups to join.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{free_port()}/0"}]},
        }
    }


def socket_of(consumer: type, path: str, user) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(consumer.as_asgi(), path)
    socket.scope["user"] = user
    return socket


@pytest.mark.parametrize(("consumer", "path"), SOCKETS)
async def test_it_closes_the_socket_with_try_again_later_while_the_layer_is_down(consumer, path, layer_down, lead):
    socket = socket_of(consumer, path, lead)

    connected, _ = await socket.connect(timeout=TIMEOUT)

    assert connected  # accepted, so that the browser sees the code
    assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": TRY_AGAIN_LATER}
    await socket.disconnect(timeout=TIMEOUT)  # and the consumer ends without an error


@pytest.mark.parametrize(("consumer", "path"), SOCKETS)
async def test_an_anonymous_socket_is_still_refused_as_anonymous(consumer, path, layer_down):
    from django.contrib.auth.models import AnonymousUser

    socket = socket_of(consumer, path, AnonymousUser())

    assert await socket.connect(timeout=TIMEOUT) == (False, 4401)
    await socket.disconnect(timeout=TIMEOUT)
