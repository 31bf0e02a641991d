"""Celery's broker on Redis: kombu's transport, keeping one Redis client per
channel.

kombu's Redis channel builds a new redis.Redis around its connection pool
for every command it sends outside the consumer's loop
(Channel.conn_or_acquire), so for every task queued. Building one (its table
of response callbacks, the checks of its arguments) cost about a fifth of a
publish here, more than the LPUSH itself. A client is thread-safe and holds
nothing but that pool, which is the channel's own: one per channel sends
the same commands through the same connections."""

from __future__ import annotations

from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    _client_for_commands: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's loop: kombu keeps that one itself
            return super()._create_client(asynchronous=True)
        client = self._client_for_commands
        # A new one should the channel have replaced its pool (reconnected).
        if client is None or client.connection_pool is not self.pool:
            client = self._client_for_commands = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
