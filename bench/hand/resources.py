"""What each server process keeps (pools, clients, validators), and who and what a request names."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
from django.conf import settings

from approvals.api.throttle import _COUNT_SCRIPT

# ---------------------------------------------------------------- per process


class Resources:
    """One per server process, made on its first request (on its event loop)."""

    def __init__(self) -> None:
        from channels.layers import get_channel_layer
        from psycopg_pool import AsyncConnectionPool
        from redis.asyncio import Redis

        self.pool = AsyncConnectionPool(
            os.environ["DATABASE_URL"],
            min_size=1,
            max_size=getattr(settings, "DB_POOL_SIZE", 0) or 8,
            kwargs={"autocommit": True},  # BEGIN and COMMIT are sent in the pipelines
            open=False,
        )
        self.redis = Redis.from_url(settings.REDIS_URL)
        self.count_script = self.redis.register_script(_COUNT_SCRIPT)
        self.channel_layer = get_channel_layer()
        self.cache_prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        self.queue = settings.CELERY_TASK_DEFAULT_QUEUE
        self.origin = f"gen{os.getpid()}@{socket.gethostname()}"
        self.reply_to = str(uuid.uuid4())
        self.validators: dict[str, jsonschema.protocols.Validator] = {}
        self.zone = ZoneInfo(settings.TIME_ZONE)

    async def open(self) -> None:
        await self.pool.open()

    def validator(self, schema_text: str) -> Any:
        """A compiled validator per schema, keyed by its text: a changed schema is a new key."""
        validator = self.validators.get(schema_text)
        if validator is None:
            validator = jsonschema.Draft202012Validator(json.loads(schema_text) or {})
            self.validators[schema_text] = validator
        return validator


_resources: Resources | None = None
_opening = asyncio.Lock()


async def resources() -> Resources:
    global _resources
    if _resources is None:
        async with _opening:
            if _resources is None:
                made = Resources()
                await made.open()
                _resources = made
    return _resources


@dataclass
class Caller:
    key_id: int
    key_prefix: str
    agent_id: int
    agent_slug: str
    agent_status: str
    department_id: int
    department_sla_minutes: int


@dataclass
class ActionType:
    id: int
    slug: str
    risk: str
    schema_text: str
    amount_path: str
    currency_path: str
    currency: str
    executor: str
    reversible: bool
    undo_window_seconds: int
    expiry_hours: int
    routing_department_id: int | None
    routing_sla_minutes: int | None
