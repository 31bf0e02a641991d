"""Fault: Redis killed and restarted in the middle of intake.

The app (uvicorn in a thread, PostgreSQL) runs against a private
redis-server on a free port (never the machine's shared one) as its cache,
Celery broker and channel layer. Agents keep proposing while it is down:
every proposal is answered 201 and stored with its audit event (the
database is the source of truth); the rate limit fails open; a long poll
falls back to reading the database; a lead's approval goes through. Redis
restarts empty on the same port, so every routing message sent before the
kill is lost too. Once it is back: new proposals are queued again, live
pushes flow again, and the sweep (beat's job) routes every waiting action
exactly once and dispatches the approval whose dispatch message was lost.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from uuid import uuid4

import httpx
import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from agents.models import Tier
from approvals import live, tasks
from approvals.api import waiting
from approvals.models import Action
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from config.celery import app as celery_app
from tests.api.test_api_keys import new_key
from tests.api.test_api_proposals import ACTIONS, REFUND_SCHEMA, granted, refund
from tests.monitoring.test_healthz import PrivateRedis
from tests.pages.test_queue_live import browser_for
from tests.support.dispatching import webhook_type
from tests.support.factories import GrantFactory
from tests.support.servers import ASGIServerThread, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# A proposal made while Redis is down may take a little longer (each Redis
# client finds the port closed), never much longer.
SLOW_ANSWER_SECONDS = 3.0


def _use_broker(url: str) -> tuple[object, object]:
    """Point Celery's publisher at `url`: its connection and producer pools
    are built lazily from broker_url. Returns the pools it set aside."""
    aside = (celery_app._pool, celery_app.amqp._producer_pool)
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    return aside


def _restore_broker(url: str, aside: tuple[object, object]) -> None:
    """Back to `url` and the very pools that served it before."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app.conf.broker_url = url
    celery_app._pool, celery_app.amqp._producer_pool = aside


@pytest.fixture
def private_redis(real_services, short_lived_db_connections, settings) -> Iterator[PrivateRedis]:
    """A private redis-server as cache, channel layer and Celery broker (no worker: the
    test runs beat's sweep itself); everything is pointed back afterwards."""
    server = PrivateRedis()
    server.start()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url, "KEY_PREFIX": "f"}
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": server.url, "socket_timeout": 15}], "prefix": "f"},
        }
    }
    settings.DISPATCH_GRACE_SECONDS = 0  # the sweep takes what is due at once
    queue = f"test-faults-{uuid4().hex[:12]}"
    saved = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager", "task_default_queue")}
    celery_app.conf.update(task_always_eager=False, task_default_queue=queue)
    aside = _use_broker(server.url)
    server.queue = queue  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        _restore_broker(saved["broker_url"], aside)
        celery_app.conf.update(saved)
        server.stop()


def queued(server: PrivateRedis) -> list[str]:
    """The actions whose routing waits in the test's Celery queue on the
    private Redis: each message a `route_actions` of a list (the door
    gathers the routing of proposals answered together)."""
    messages = redis.Redis(port=server.port).lrange(server.queue, 0, -1)  # type: ignore[attr-defined]
    ids = []
    for message in map(json.loads, messages):
        assert message["headers"]["task"] == "approvals.tasks.route_actions"
        (action_ids,), _, _ = json.loads(base64.b64decode(message["body"]))
        ids += action_ids
    return ids


def test_intake_goes_on_while_redis_restarts_and_routing_and_live_updates_catch_up(
    private_redis, agent, lead, receiver
):
    from config.asgi import application

    GrantFactory(
        agent=agent,
        tier=Tier.CONTRIBUTOR,
        action_type=webhook_type(receiver.url, slug="payments.refund", payload_schema=REFUND_SCHEMA),
    )
    with ASGIServerThread(application) as server:
        agent_api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {new_key(agent)}"}, timeout=30)
        lead_ui = browser_for(server.url, lead)

        def propose(n: int) -> str:
            started = time.monotonic()
            answer = agent_api.post(ACTIONS, json=refund(idempotency_key=f"order-{n}"))
            assert answer.status_code == 201, answer.text
            assert time.monotonic() - started < SLOW_ANSWER_SECONDS
            assert answer.json()["status"] == Status.PENDING
            return answer.json()["id"]

        # Redis up: each proposal's routing message is queued for a worker.
        before = [propose(n) for n in range(5)]
        # Queued just after each answer has gone out (approvals.after_answer).
        wait_for(lambda: len(queued(private_redis)) >= 5, what="five routings")
        assert sorted(queued(private_redis)) == sorted(before)
        assert redis.Redis(port=private_redis.port).keys("f:*throttle_agent_*")  # the rate limit counts in Redis

        # Redis killed: the messages queued so far are gone with it.
        private_redis.stop()
        during = [propose(n) for n in range(5, 15)]
        # A replay with the same key is still a replay, not a new action.
        replay = agent_api.post(ACTIONS, json=refund(idempotency_key="order-7"))
        assert (replay.status_code, replay.json()["id"]) == (200, during[2])
        # A long poll cannot listen on the channel layer: it reads the database instead, and answers.
        started = time.monotonic()
        polled = agent_api.get(f"{ACTIONS}{during[0]}/", params={"wait": 2})
        assert (polled.status_code, polled.json()["status"]) == (200, Status.PENDING)
        assert 1.5 < time.monotonic() - started < 2 + SLOW_ANSWER_SECONDS
        # A lead approves: the decision commits; its dispatch message cannot be sent.
        decided = lead_ui.post(f"/actions/{during[1]}/approve/")
        assert decided.status_code == 302, decided.text[:300]
        assert Action.objects.get(pk=during[1]).status == Status.APPROVED

        # Redis back, empty, on the same port.
        private_redis.start()
        listener = get_channel_layer()
        channel = async_to_sync(listener.new_channel)()
        async_to_sync(listener.group_add)(live.department_group(agent.department_id), channel)
        after = [propose(n) for n in range(15, 18)]
        wait_for(lambda: len(queued(private_redis)) >= 3, what="three routings")
        assert sorted(queued(private_redis)) == sorted(after)  # routing messages are queued again
        pushed = async_to_sync(listener.receive)(channel)
        assert (pushed["type"], pushed["action_id"]) == ("action.changed", after[0])  # live pushes flow again
        # A resync (what a reconnecting queue page asks for) shows every waiting action.
        page = lead_ui.get("/queue/")
        assert page.status_code == 200
        assert all(action_id in page.text for action_id in before + during + after if action_id != during[1])
        agent_api.close()
        lead_ui.close()

    proposed = before + during + after
    assert Action.objects.count() == len(proposed) == 18
    assert AuditEvent.objects.filter(verb="action.proposed").count() == 18
    assert not AuditEvent.objects.filter(verb="action.routed").exists()  # no worker ran

    # Beat's sweep routes every waiting action, whatever became of its message,
    # and re-queues the approval's lost dispatch (run in-process here).
    celery_app.conf.task_always_eager = True
    tasks.sweep_dispatches()
    routed = AuditEvent.objects.filter(verb="action.routed")
    assert sorted(routed.values_list("object_id", flat=True)) == sorted(a for a in proposed if a != during[1])
    assert not Action.objects.filter(status=Status.PENDING, routed_at__isnull=True).exists()
    assert Action.objects.get(pk=during[1]).status == Status.SUCCEEDED
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [during[1]]
    # A late routing message (the three queued after the restart) finds nothing to do.
    for action_id in after:
        tasks.route_action(action_id)
    tasks.sweep_dispatches()
    assert routed.count() == 17
    assert len(receiver.requests) == 1


def test_the_rate_limit_fails_open_when_the_cache_is_down(agent, settings, client):
    """Unit-sized: no server. A cache on a closed port, and the agent is served."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    granted(agent)
    answer = client.post(
        ACTIONS, refund(), content_type="application/json", headers={"Authorization": f"Bearer {new_key(agent)}"}
    )
    assert answer.status_code == 201, answer.content


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every routing enqueue fails, as with the broker down."""

    def down(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(tasks.route_actions, "delay", down)


def test_a_lost_routing_message_is_routed_by_the_sweep_once(propose, settings, broker_down):
    settings.DISPATCH_GRACE_SECONDS = 0
    action = propose()
    assert Action.objects.get(pk=action.pk).routed_at is None

    tasks.sweep_dispatches()
    tasks.sweep_dispatches()

    assert Action.objects.get(pk=action.pk).routed_at is not None
    assert AuditEvent.objects.filter(verb="action.routed", object_id=str(action.pk)).count() == 1


def test_the_sweep_leaves_a_proposal_younger_than_the_grace_to_its_own_message(propose, settings, broker_down):
    settings.DISPATCH_GRACE_SECONDS = 60
    action = propose()

    tasks.sweep_dispatches()

    assert Action.objects.get(pk=action.pk).routed_at is None


def test_a_proposal_commits_and_answers_when_the_broker_and_layer_fail(agent, monkeypatch, client, broker_down):
    """The enqueue and the publish after commit both raise: the agent still gets its 201."""
    granted(agent)
    monkeypatch.setattr(live, "publish_action_proposed", lambda *a: (_ for _ in ()).throw(OSError("Redis is down")))

    answer = client.post(
        ACTIONS, refund(), content_type="application/json", headers={"Authorization": f"Bearer {new_key(agent)}"}
    )

    assert answer.status_code == 201, answer.content
    action = Action.objects.get(pk=answer.json()["id"])
    assert (action.status, action.routed_at) == (Status.PENDING, None)
    assert AuditEvent.objects.filter(verb="action.proposed", object_id=str(action.pk)).count() == 1


def test_a_long_poll_reads_the_database_when_the_channel_layer_fails(monkeypatch):
    """until_settled, unit-sized: the layer refuses, the action leaves pending on the second read."""

    class DeadLayer:
        async def new_channel(self) -> str:
            raise redis.ConnectionError("Redis is down")

    reads = iter([True, True, False])

    async def is_pending() -> bool:
        return next(reads)

    monkeypatch.setattr(waiting, "get_channel_layer", DeadLayer)
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.05)
    started = time.monotonic()
    async_to_sync(waiting.until_settled)("some-action", 5, is_pending)
    assert time.monotonic() - started < 1
