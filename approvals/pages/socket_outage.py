"""The live sockets while the channel layer (Redis) does not answer.

A consumer touches the layer in two places: joining its groups on connect,
and reading its channel, which Channels does in a task beside the socket
from the start. Either raising would crash the consumer: an HTTP 500 on the
handshake, a traceback in the log, and a browser that cannot tell a bug from
an outage. With this mixin (first in the consumer's bases) the socket is
accepted and closed at once with 1013 "try again later", which htmx's ws
extension answers by reconnecting after a pause (static/countersign/sockets.js
makes the pause grow). A layer lost mid-session closes the socket the same way.
The queue's sockets read no channel of their own: their process reads one
for all of them (approvals.pages.fanout) and, when that read fails, hands
each the same `layer.unreachable` message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.exceptions
from channels.exceptions import StopConsumer

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013
# What channels_redis lets through when Redis refuses, drops or stalls the connection.
LAYER_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class ClosesWhileLayerDown:
    """For an AsyncWebsocketConsumer: a layer that does not answer closes the
    socket with TRY_AGAIN_LATER instead of crashing the consumer."""

    accepted = False
    closed = False
    layer_is_down = False
    _layer_receive: Any = None

    # AsyncConsumer.__call__ assigns the layer's read to `channel_receive`
    # and awaits it beside the socket's messages; this keeps its failure
    # from ending the consumer, and turns it into one `layer.unreachable`
    # message handled in turn with the socket's own.
    @property
    def channel_receive(self) -> Any:
        return self._guarded_receive

    @channel_receive.setter
    def channel_receive(self, receive: Any) -> None:
        self._layer_receive = receive

    async def _guarded_receive(self) -> dict[str, Any]:
        if self.layer_is_down:
            await asyncio.Event().wait()  # read no more; cancelled when the consumer ends
        try:
            return await self._layer_receive()
        except LAYER_DOWN:
            self.layer_is_down = True
            return {"type": "layer.unreachable"}

    async def layer_unreachable(self, message: dict[str, Any]) -> None:
        if self.accepted:  # else websocket_connect, still to come, sees layer_is_down
            await self.try_again_later()

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        try:
            await super().websocket_connect(message)  # type: ignore[misc]
        except LAYER_DOWN:
            self.layer_is_down = True
        # Also when the groups were joined but the channel's read had failed:
        # such a socket would never hear a push.
        if self.layer_is_down:
            await self.try_again_later()

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)  # type: ignore[misc]
        self.accepted = True

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        await super().close(code, reason)  # type: ignore[misc]
        self.closed = True

    async def try_again_later(self) -> None:
        if self.closed:  # refused already (an anonymous socket, say)
            return
        log.warning("Closing a socket with 1013: the channel layer does not answer.")
        if not self.accepted:
            await self.accept()  # a close code reaches the browser only on an accepted socket
        await self.close(code=TRY_AGAIN_LATER)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        try:
            await super().websocket_disconnect(message)  # type: ignore[misc]
        except LAYER_DOWN as failed:
            # Leaving the groups failed too; Redis expires memberships on its own.
            log.warning("A closed socket could not leave its groups (%s): they stay until they expire", failed)
            raise StopConsumer() from None
