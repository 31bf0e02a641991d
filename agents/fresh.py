"""Per-process caches of the rows every API request reads (an agent's key
with its agent and department, an action type), and the announcement that
drops them on every server within a second of a change.

A change announces itself: `announce()` empties this process's caches at
once and, when the transaction commits, writes a new generation (a random
token, never one seen before: a counter would start again after Redis
restarts or is flushed, and an entry kept under an old value of it would be
served as current) in the cache's Redis. Every process reads the generation
at most every CHECK_SECONDS and empties its caches when it moved; so a revoked key, a
suspended agent or an edited action type is refused or read afresh on every
server at most CHECK_SECONDS after the commit. The embedded run is one
process: the local emptying is all it needs.

Saves and deletes of the cached models announce through `announce_changes_of`
(signals, so that admin forms, factories and every `.save()` are covered
without a call at each); a queryset's `.update()` sends no signal, so the
cached models' querysets are `AnnouncingQuerySet`s, whose `update` (and so
`bulk_update`) announces. The two frequent writes that change nothing a cache
serves (a key's last use, an agent's dispatch-failure count) say so by
calling `update_unannounced`.

When Redis does not answer, nothing is served from the caches (every
request reads the database) until it does; and no entry lives longer than
MAX_AGE_SECONDS, a backstop for a change made outside the code (SQL by hand).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import transaction
from django.db.models import Model, QuerySet
from django.db.models.signals import post_delete, post_save

from agents import shared_redis

CHECK_SECONDS = 0.25
MAX_AGE_SECONDS = 60.0
GENERATION_KEY = "fresh_generation"

T = TypeVar("T")
M = TypeVar("M", bound=Model)

_caches: list[Recent[Any]] = []


class _Generation:
    """The shared generation counter as this process last read it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: str | None = None
        self.read_at = -CHECK_SECONDS
        self.local = 0  # bumped by every announcement in this process, at once

    def current(self) -> tuple[str, int] | None:
        """(shared, local) generation; None while Redis does not answer (serve nothing cached)."""
        client = shared_redis.client()
        if client is None:
            return ("", self.local)
        now = time.monotonic()
        if now - self.read_at >= CHECK_SECONDS:
            with self.lock:
                if now - self.read_at >= CHECK_SECONDS:
                    self.value = _read_shared(client)
                    self.read_at = now
        return None if self.value is None else (self.value, self.local)


def _read_shared(client: Any) -> str | None:
    try:
        return (client.get(shared_redis.key(GENERATION_KEY)) or b"").decode()
    except Exception:  # redis-py's errors: a Redis down or restarting
        return None


_generation = _Generation()


class Recent(Generic[T]):
    """Rows by key, as read in the current generation and at most MAX_AGE_SECONDS ago.
    A miss (the loader returns None) is not kept: a new row is found at once."""

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[tuple[str, int], float, T]] = {}
        _caches.append(self)

    def get(self, key: Any, load: Callable[[], T | None]) -> T | None:
        # The generation is read before loading: a change announced while loading
        # moves it on, and what was loaded is not served after that.
        generation = _generation.current()
        entry = self._entries.get(key)
        now = time.monotonic()
        if generation is not None and entry is not None and entry[0] == generation and now - entry[1] < MAX_AGE_SECONDS:
            return entry[2]
        value = load()
        if value is None or generation is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = (generation, now, value)
        return value

    def peek(self, key: Any) -> T | None:
        """The kept row, if any, without loading or checking its generation."""
        entry = self._entries.get(key)
        return None if entry is None else entry[2]

    def clear(self) -> None:
        self._entries.clear()


def announce() -> None:
    """A cached row changed: drop it here now, and on every server once this commits."""
    forget_here()
    transaction.on_commit(_announce_everywhere, robust=True)


def forget_here() -> None:
    _generation.local += 1
    for cache in _caches:
        cache.clear()


def _announce_everywhere() -> None:
    # Again here: a request may have loaded the old row between the change and the commit.
    forget_here()
    client = shared_redis.client()
    if client is not None:
        value = uuid.uuid4().hex
        client.set(shared_redis.key(GENERATION_KEY), value)
        with _generation.lock:
            _generation.value, _generation.read_at = value, time.monotonic()


class AnnouncingQuerySet(QuerySet[M]):
    """A queryset whose bulk `update` announces, as a save does."""

    def update(self, **kwargs: Any) -> int:
        updated = super().update(**kwargs)
        if updated:
            announce()
        return updated

    def update_unannounced(self, **kwargs: Any) -> int:
        """For a field no cache serves a decision from, written too often to empty them each time."""
        return super().update(**kwargs)


def announce_changes_of(*models: type[Model]) -> None:
    """Announce every save and delete of these models (called once, at start-up)."""
    for model in models:
        post_save.connect(_changed, sender=model, dispatch_uid=f"fresh.saved.{model._meta.label}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"fresh.deleted.{model._meta.label}")


def _changed(**_: Any) -> None:
    announce()
