"""config.channel_layer: a group send reaches every member as channels_redis's
does (its expired memberships and a channel's expired messages dropped, a
full channel skipped), in two round trips to Redis, one for an empty group;
several group sends together (the live updates of a burst of proposals) in
the same two."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from redis.asyncio.client import Pipeline, Redis

pytestmark = pytest.mark.usefixtures("real_services")


def _group() -> str:
    return f"test-send.{uuid.uuid4().hex}"


def _round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts what goes to Redis: each command, and each pipeline as one."""
    sent: list[str] = []
    command, execute = Redis.execute_command, Pipeline.execute

    async def counted_command(self: Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return await command(self, *args, **options)

    async def counted_pipeline(self: Pipeline, *args: Any, **options: Any) -> Any:
        sent.append("PIPELINE")
        return await execute(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "execute", counted_pipeline)
    return sent


def test_every_member_gets_the_message_in_two_round_trips(monkeypatch):
    layer, group = get_channel_layer(), _group()

    async def scenario() -> tuple[list[dict[str, Any]], list[str]]:
        channels = [await layer.new_channel() for _ in range(3)]
        for channel in channels:
            await layer.group_add(group, channel)
        sent = _round_trips(monkeypatch)
        await layer.group_send(group, {"type": "action.changed", "action_id": "a1"})
        monkeypatch.undo()
        received = [await asyncio.wait_for(layer.receive(channel), 5) for channel in channels]
        for channel in channels:
            await layer.group_discard(group, channel)
        return received, sent

    received, sent = asyncio.run(scenario())
    assert [message["action_id"] for message in received] == ["a1"] * 3
    assert sent == ["PIPELINE", "EVAL"]


def test_sends_to_several_groups_go_together_in_two_round_trips_each_member_in_order(monkeypatch):
    layer, first, second = get_channel_layer(), _group(), _group()

    async def scenario() -> tuple[dict[str, list[str]], list[str]]:
        both, only_first, only_second = [await layer.new_channel() for _ in range(3)]
        for group, channel in ((first, both), (second, both), (first, only_first), (second, only_second)):
            await layer.group_add(group, channel)
        sent = _round_trips(monkeypatch)
        await layer.group_send_many(
            [(first, {"type": "action.changed", "action_id": n}) for n in ("a1", "a2")]
            + [(second, {"type": "action.changed", "action_id": "b1"})]
        )
        monkeypatch.undo()
        heard = {}
        for name, channel, count in (("both", both, 3), ("first", only_first, 2), ("second", only_second, 1)):
            heard[name] = [(await asyncio.wait_for(layer.receive(channel), 5))["action_id"] for _ in range(count)]
        for group, channel in ((first, both), (second, both), (first, only_first), (second, only_second)):
            await layer.group_discard(group, channel)
        return heard, sent

    heard, sent = asyncio.run(scenario())
    assert heard == {"both": ["a1", "a2", "b1"], "first": ["a1", "a2"], "second": ["b1"]}
    assert sent == ["PIPELINE", "EVAL"]


def test_an_empty_group_costs_one_round_trip(monkeypatch):
    layer = get_channel_layer()

    async def scenario() -> list[str]:
        sent = _round_trips(monkeypatch)
        await layer.group_send(_group(), {"type": "action.changed"})
        return sent

    assert asyncio.run(scenario()) == ["PIPELINE"]


def test_expired_messages_and_memberships_are_dropped_and_a_full_channel_skipped():
    layer, group = get_channel_layer(), _group()
    # Channels of their own keys (a process's channels share one key, and its capacity).
    full, gone, listening = (f"test-send.{name}.{uuid.uuid4().hex}" for name in ("full", "gone", "ear"))

    async def scenario() -> tuple[str, bool, int]:
        for channel in (full, listening):
            await layer.group_add(group, channel)
        connection = layer.connection(0)
        # A membership a day and more old, as one left behind by a crash.
        await connection.zadd(layer._group_key(group), {gone: 1})
        # A message past the layer's expiry waits in `listening`; `full` is at capacity.
        await connection.zadd(layer.prefix + listening, {b"stale": 1})
        for n in range(layer.get_capacity(full)):
            await layer.send(full, {"type": "filler", "n": n})
        await layer.group_send(group, {"type": "action.changed", "action_id": "a2"})
        heard = await asyncio.wait_for(layer.receive(listening), 5)
        still_member = await connection.zscore(layer._group_key(group), gone) is not None
        queued = await connection.zcard(layer.prefix + full)
        await connection.delete(layer.prefix + full)
        for channel in (full, listening):
            await layer.group_discard(group, channel)
        return heard["action_id"], still_member, queued

    heard, still_member, queued = asyncio.run(scenario())
    assert heard == "a2"  # not the stale message
    assert still_member is False
    assert queued == get_channel_layer().get_capacity(full)  # the group's message was not added
