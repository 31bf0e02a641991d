"""The channel layer on Redis: channels_redis's, with a pool that makes a
burst of commands wait for a connection rather than fail.

redis-py's asyncio pool holds at most 100 connections per event loop and
refuses the 101st command in flight ("Too many connections"). A thousand
sockets or long polls ending at once each leave their groups at the same
moment: past the hundredth, the leaving failed, and the membership stayed
for channels_redis's group expiry (a day), every later message to the group
sent to a dead channel. A thousand joining at once failed alike (sockets
closed with 1013, long polls fell back to polling). With a blocking pool the
burst queues for the pool's connections instead: each command takes well
under a millisecond."""

from __future__ import annotations

from channels_redis import core
from redis.asyncio import BlockingConnectionPool


class RedisChannelLayer(core.RedisChannelLayer):
    """Each host's `max_connections` and `timeout` (seconds a command may wait
    for a free connection) size its pool; the other keys are redis-py's."""

    def create_pool(self, index: int) -> BlockingConnectionPool:
        host = dict(self.hosts[index])
        return BlockingConnectionPool.from_url(host.pop("address"), **host)
