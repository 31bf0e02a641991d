"""The channel layer on Redis: channels_redis's, with a pool that makes a
burst of commands wait for a connection rather than fail, and a group send
in fewer round trips.

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

import logging
import time
from typing import Any

from channels_redis import core
from redis.asyncio import BlockingConnectionPool

log = logging.getLogger(__name__)

# channels_redis's script for a group send, which also drops each channel's
# expired messages first (channels_redis sends those trims as a round trip
# of their own). KEYS: the channels' keys. ARGV: a message per key, a
# capacity per key, then the trim's bound, the time and the keys' expiry.
_SEND_TO_CHANNELS = """
local over_capacity = 0
local trim_before = ARGV[#ARGV - 2]
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, trim_before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


class RedisChannelLayer(core.RedisChannelLayer):
    """Each host's `max_connections` and `timeout` (seconds a command may wait
    for a free connection) size its pool; the other keys are redis-py's."""

    def create_pool(self, index: int) -> BlockingConnectionPool:
        host = dict(self.hosts[index])
        return BlockingConnectionPool.from_url(host.pop("address"), **host)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """channels_redis's group send, the same commands in two round trips
        rather than four (one, to a group nobody is in: a department with no
        lead online): the group's expired memberships dropped and the others
        read together; then, on each member's Redis host, one script that
        drops the channel's expired messages and adds this one. Every new
        proposal sends one, on the agent API's event loop."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        now = time.time()
        async with self.connection(self.consistent_hash(group)).pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        if not members:
            return
        names = [member.decode("utf8") for member in members]
        keys_by_host, messages, capacities = self._map_channel_keys_to_connection(names, message)
        for index, keys in keys_by_host.items():
            args = [*(messages[k] for k in keys), *(capacities[k] for k in keys), int(now) - int(self.expiry)]
            over_capacity = await self.connection(index).eval(
                _SEND_TO_CHANNELS, len(keys), *keys, *args, now, self.expiry
            )
            if over_capacity > 0:
                log.info("%s of %s channels over capacity in group %s", over_capacity, len(names), group)
