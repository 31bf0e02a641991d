"""One Redis client per process for the cache's Redis, shared by every thread.

Django's cache handler builds a cache object, and with it a Redis client and
a new TCP connection, per thread; under ASGI a sync view runs in a new
thread, so every request paid for a connection. The hot paths that talk to
the cache's Redis directly (the rate limit, the freshness generation of
agents.fresh) use this client instead: redis-py's connection pool is
thread-safe and reused across requests. It follows `settings.CACHES`, so a
test that points the cache elsewhere gets a client for that server.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings
from django.core.cache.backends.base import default_key_func

REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def client() -> redis.Redis | None:
    """The shared client of the default cache's Redis; None when the cache is not Redis (the embedded run)."""
    conf = settings.CACHES["default"]
    if conf["BACKEND"] != REDIS_CACHE:
        return None
    location = conf["LOCATION"]
    found = _clients.get(location)
    if found is None:
        with _lock:
            found = _clients.setdefault(location, redis.Redis.from_url(location))
    return found


def key(name: str) -> str:
    """`name` as Django's cache names it in Redis (prefix and version), so the
    cache API (cache.get, cache.delete) reaches the same key."""
    conf = settings.CACHES["default"]
    return default_key_func(name, conf.get("KEY_PREFIX", ""), conf.get("VERSION", 1))
