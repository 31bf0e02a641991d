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
from collections import defaultdict
from typing import Any

from channels_redis import core
from redis.asyncio import BlockingConnectionPool

log = logging.getLogger(__name__)

# channels_redis's script for a group send, which also drops each channel's
# expired messages first (channels_redis sends those trims as a round trip
# of their own). KEYS: the channels' keys. ARGV: a message per key, a
# capacity per key, then the trim's bound, the time and the keys' expiry.
# A channel's messages are read lowest score first: each message is scored a
# microsecond after the one before it, so that several to one channel in one
# call (group_send_many) arrive in the order they were sent.
_SEND_TO_CHANNELS = """
local over_capacity = 0
local trim_before = ARGV[#ARGV - 2]
local current_time = tonumber(ARGV[#ARGV - 1])
local expiry = ARGV[#ARGV]
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, trim_before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time + i / 1000000, ARGV[i])
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
        drops the channel's expired messages and adds this one."""
        await self.group_send_many([(group, message)])

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """Each (group, message) as group_send sends it, all in the same two
        round trips per Redis host: the live pushes of the proposals a
        process answered within a few milliseconds (approvals.live)."""
        now = time.time()
        members = await self._members({group for group, _ in sends}, now)
        keys: dict[int, list[str]] = defaultdict(list)
        payloads: dict[int, list[bytes]] = defaultdict(list)
        capacities: dict[int, list[int]] = defaultdict(list)
        for group, message in sends:
            if not members[group]:
                continue
            keys_by_host, payload_of, capacity_of = self._map_channel_keys_to_connection(members[group], message)
            for index, host_keys in keys_by_host.items():
                keys[index] += host_keys
                payloads[index] += [payload_of[key] for key in host_keys]
                capacities[index] += [capacity_of[key] for key in host_keys]
        for index, host_keys in keys.items():
            over_capacity = await self.connection(index).eval(
                _SEND_TO_CHANNELS,
                len(host_keys),
                *host_keys,
                *payloads[index],
                *capacities[index],
                int(now) - int(self.expiry),
                now,
                self.expiry,
            )
            if over_capacity > 0:
                log.info("%s of %s messages to channels over capacity", over_capacity, len(host_keys))

    async def _members(self, groups: set[str], now: float) -> dict[str, list[str]]:
        """Each group's channels, its expired memberships dropped first: one
        pipeline per Redis host of the groups."""
        by_host: dict[int, list[str]] = defaultdict(list)
        for group in groups:
            assert self.require_valid_group_name(group), "Group name not valid"
            by_host[self.consistent_hash(group)].append(group)
        members = {}
        for index, host_groups in by_host.items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for group in host_groups:
                    key = self._group_key(group)
                    pipe.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
                    pipe.zrange(key, 0, -1)
                read = await pipe.execute()
            for group, channels in zip(host_groups, read[1::2], strict=True):
                members[group] = [channel.decode("utf8") for channel in channels]
        return members
