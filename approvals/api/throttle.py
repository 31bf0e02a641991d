"""The per-agent rate limit: a sliding window, counted in the shared cache.

Fixed windows let an agent send twice its rate across a boundary (the end of
one minute and the start of the next). A sliding window counts the current
window in full and the previous one by the share of it that still lies
within the last period:

    estimate = previous * (1 - elapsed / period) + current

the approximation Cloudflare and others use: it needs two counters per agent,
not a log of every request. On Redis the increment and the read of the
previous window are one Lua script, so one round trip over the process's
shared client (agents.shared_redis: no new connection per request); the
embedded run's in-process cache does the same in three calls.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from redis.commands.core import Script
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from agents import shared_redis

log = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# KEYS: this window's counter, the previous window's. ARGV: the counter's life.
_COUNT_SCRIPT = """
local current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {current, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
_script: Script | None = None


@dataclass(frozen=True)
class Window:
    limit: int
    period: int  # seconds
    start: float  # this window's start, in clock seconds
    elapsed: float  # seconds since then

    @classmethod
    def at(cls, now: float, rate: str) -> Window:
        count, _, unit = rate.partition("/")
        period = PERIODS[unit[0]]
        return cls(limit=int(count), period=period, start=now - now % period, elapsed=now % period)

    @property
    def number(self) -> int:
        return int(self.start // self.period)

    def estimate(self, previous: int, current: int) -> float:
        # Rounded so float error never tips a count sitting exactly on the limit.
        return round(previous * (1 - self.elapsed / self.period) + current, 6)

    def seconds_until_allowed(self, previous: int, current: int) -> int:
        """How long until one more request would be allowed, with no others meanwhile."""
        if current < self.limit and previous:
            # Within this window, as the previous one's share fades.
            needed = self.period * (1 - (self.limit - current - 1) / previous)
            return max(1, math.ceil(round(needed - self.elapsed, 6)))
        if current < self.limit:
            return 1
        # In the next window this one becomes the previous: wait for enough of it to fade.
        fade = self.period * (1 - (self.limit - 1) / current)
        return max(1, math.ceil(round(self.period - self.elapsed + fade, 6)))


class AgentRateThrottle(BaseThrottle):
    """Requests per agent in a sliding window, counted in the shared cache
    (Redis in production), so every server agrees."""

    # e.g. "1200/min". The stubs type the rates as numbers; DRF reads them as "count/period"
    # strings (its own SimpleRateThrottle.THROTTLE_RATES is typed so).
    rate: str = api_settings.DEFAULT_THROTTLE_RATES["agent"]  # type: ignore[assignment]

    @staticmethod
    def cache_key(agent_id: int, window: int) -> str:
        return f"throttle_agent_{agent_id}_{window}"

    @staticmethod
    def now() -> float:
        """The clock the windows are cut from; tests pin it."""
        return time.time()

    def allow_request(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return True
        window = Window.at(self.now(), self.rate)
        agent_id = request.user.pk
        try:
            previous, current = _count(
                self.cache_key(agent_id, window.number), self.cache_key(agent_id, window.number - 1), window.period
            )
        except Exception:  # redis-py's errors, whatever the cache backend raises
            # Fail open: the cache (Redis) is down or restarting. The database
            # is the source of truth and the policy's hard limits hold without
            # the cache; refusing every agent would turn a Redis restart into
            # an outage of the gateway.
            log.warning("Rate limit not applied: the cache does not answer", exc_info=True)
            return True
        if window.estimate(previous, current) <= window.limit:
            return True
        # The refused request counted too: an agent that keeps knocking stays out.
        self.retry_after = window.seconds_until_allowed(previous, current)
        return False

    def wait(self) -> float:
        return self.retry_after


def _count(key: str, previous_key: str, period: int) -> tuple[int, int]:
    """Count one request in this window; return (previous window's count, this one's)."""
    # Two periods of life: the counter is read as "previous" through the next window.
    ttl = 2 * period + 1
    client = shared_redis.client()
    if client is not None:
        return _count_in_redis(client, key, previous_key, ttl)
    backend = caches["default"]
    backend.add(key, 0, timeout=ttl)
    try:
        current = backend.incr(key)
    except ValueError:  # the key expired between add and incr
        backend.set(key, 1, timeout=ttl)
        current = 1
    return int(backend.get(previous_key) or 0), current


def _count_in_redis(client: Any, key: str, previous_key: str, ttl: int) -> tuple[int, int]:
    global _script
    if _script is None:
        _script = client.register_script(_COUNT_SCRIPT)
    keys = [shared_redis.key(key), shared_redis.key(previous_key)]
    current, previous = _script(keys=keys, args=[ttl], client=client)
    return int(previous), int(current)
