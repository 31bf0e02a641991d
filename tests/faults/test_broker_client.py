"""config.celery_broker: Celery's Redis transport keeps one Redis client per
channel for the commands it sends (every task queued), where kombu's builds
one per command; messages go and come as before, and a channel that replaced
its connection pool gets a client of the new pool."""

from __future__ import annotations

import uuid

import pytest

from config import celery_broker
from config.celery import app


@pytest.fixture
def connection(real_services):
    with app.connection_for_write() as connection:
        yield connection


def test_the_broker_is_the_transport_keeping_a_client_per_channel(connection):
    channel = connection.default_channel
    assert isinstance(channel, celery_broker.Channel)
    assert channel._create_client() is channel._create_client()
    # The consumer's client is kombu's own, apart.
    assert channel.client is not channel._create_client()


def test_messages_sent_through_the_kept_client_all_arrive_in_order(connection):
    with connection.SimpleQueue(f"broker-test-{uuid.uuid4().hex}") as queue:
        for n in range(3):
            queue.put({"n": n})
        received = []
        for _ in range(3):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        queue.queue.delete()
    assert received == [0, 1, 2]


def test_a_channel_with_a_new_pool_gets_a_client_of_it(connection):
    channel = connection.default_channel
    before = channel._create_client()
    channel._disconnect_pools()
    after = channel._create_client()
    assert after is not before
    assert after.connection_pool is channel.pool
    assert after.ping()
