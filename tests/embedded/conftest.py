"""The embedded default as the product runs it with nothing installed: the
test database a SQLite file, Channels' in-memory layer, Celery tasks run
in-process, and config.asgi.application served by uvicorn in a thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.db import connection

from tests.support.servers import ASGIServerThread


@pytest.fixture
def embedded_default(transactional_db: None) -> None:
    """Fail, never skip, when this run is not on the embedded default."""
    from config.celery import app

    channel_layers.backends.clear()  # a layer made under another test's settings
    assert connection.vendor == "sqlite", "run the embedded tests without DATABASE_URL (./test does)"
    assert isinstance(get_channel_layer(), InMemoryChannelLayer), "run the embedded tests without REDIS_URL"
    assert app.conf.task_always_eager, "tasks run in-process on the embedded default"


@pytest.fixture
def embedded_server(embedded_default: None, short_lived_db_connections: None) -> Iterator[ASGIServerThread]:
    """The whole ASGI app on a free port. Transactional: its threads see only
    committed rows, so tests commit theirs."""
    from config.asgi import application

    with ASGIServerThread(application) as server:
        yield server
