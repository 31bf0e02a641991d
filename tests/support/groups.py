"""What the channel layer on Redis holds: group memberships, counted as
channels_redis stores them (a sorted set `<prefix>:group:<name>` per group)."""

from __future__ import annotations

from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings


def members(pattern: str = "*") -> dict[str, int]:
    """The size of every non-empty group whose name matches `pattern`."""
    prefix = f"{get_channel_layer().prefix}:group:"
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}{pattern}", count=1000))
        sizes = [client.zcard(key) for key in keys]
    finally:
        client.close()
    return {key.decode()[len(prefix) :]: size for key, size in zip(keys, sizes, strict=True) if size}


def total(pattern: str = "*") -> int:
    return sum(members(pattern).values())


def with_pool_of(settings: Any, connections: int) -> None:
    """Give the Redis channel layer `connections` per event loop (through a
    pytest-django `settings`): a burst larger than that must wait its turn, not fail."""
    layer = settings.CHANNEL_LAYERS["default"]
    host = {**layer["CONFIG"]["hosts"][0], "max_connections": connections}
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": [host]}}}
