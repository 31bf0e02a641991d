"""/healthz against a Redis of its own: a private redis-server on a free port
(never the machine's shared one), stopped and started again mid-test. Up or
down for anyone; which check and why only for an admin or the metrics token."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from uuid import uuid4

import pytest
import redis
from django.urls import reverse
from django.utils import timezone

from approvals.models import Heartbeat
from approvals.monitoring import heartbeats
from tests.support.servers import free_port, wait_for

pytestmark = pytest.mark.django_db


class PrivateRedis:
    """redis-server on 127.0.0.1:<port>, without persistence; stop() and start() again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        wait_for(self._answers, timeout=10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def _answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_timeout=0.5).ping()
        except redis.ConnectionError:
            return False


@pytest.fixture
def private_redis(settings) -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url  # only the health check reads it per request
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def background_processes(settings) -> None:
    """A worker and beat that have just reported, as on real services."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    heartbeats.record(heartbeats.WORKER)
    heartbeats.record(heartbeats.BEAT)


TOKEN = "scrape-me-3f9c"


@pytest.fixture(autouse=True)
def metrics_token(settings) -> None:
    settings.METRICS_TOKEN = TOKEN


def health(client, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get(reverse("healthz"), headers=headers)
    return response.status_code, response.json()


def test_it_turns_503_while_redis_is_down_and_back_when_it_returns(client, private_redis, background_processes):
    status, body = health(client)
    assert (status, body["status"], body["down"]) == (200, "ok", [])

    private_redis.stop()
    status, body = health(client)
    assert (status, body["status"], body["down"]) == (503, "down", ["redis"])
    assert body["checks"]["redis"]["detail"].startswith("Redis does not answer")
    assert body["checks"]["database"]["ok"] and body["checks"]["worker"]["ok"] and body["checks"]["beat"]["ok"]

    private_redis.start()
    status, body = health(client)
    assert (status, body["down"]) == (200, [])


def test_a_silent_worker_or_beat_is_down(client, private_redis, background_processes, settings):
    Heartbeat.objects.filter(role=heartbeats.WORKER).update(
        beat_at=timezone.now() - timedelta(seconds=settings.HEARTBEAT_MAX_AGE_SECONDS + 1)
    )
    Heartbeat.objects.filter(role=heartbeats.BEAT).delete()

    status, body = health(client)

    assert (status, body["down"]) == (503, ["worker", "beat"])
    assert body["checks"]["worker"]["detail"].startswith("last heard from")
    assert body["checks"]["beat"]["detail"] == "no beat has ever reported"


def test_the_embedded_run_needs_neither_redis_nor_a_worker(client, settings):
    settings.REDIS_URL = ""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    heartbeats.record(heartbeats.BEAT)  # the server's scheduler thread

    status, body = health(client)

    assert (status, body["down"]) == (200, [])
    assert body["checks"]["redis"]["detail"] == "not used (embedded run)"


@pytest.mark.django_db(transaction=True)  # beat gives its connection back after each heartbeat
def test_beats_scheduler_records_its_heartbeat_as_it_ticks(settings, tmp_path):
    from config.celery import app

    settings.HEARTBEAT_SECONDS = 15
    scheduler = heartbeats.HeartbeatScheduler(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    scheduler.setup_schedule()
    try:
        assert scheduler.tick() <= 15
    finally:
        scheduler.close()

    assert Heartbeat.objects.filter(role=heartbeats.BEAT).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_running_worker_records_its_heartbeat(real_services, short_lived_db_connections):
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    queue = f"test-heartbeat-{uuid4().hex[:12]}"
    saved = app.conf.worker_hijack_root_logger
    app.conf.worker_hijack_root_logger = False  # leave pytest's log capture alone
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]):
            beat = wait_for(lambda: Heartbeat.objects.filter(role=heartbeats.WORKER).first(), what="a heartbeat")
    finally:
        app.conf.worker_hijack_root_logger = saved
        with app.connection_for_write() as connection:  # the queue's binding in Redis
            bound = app.amqp.queues[queue](connection.default_channel)
            bound.declare()
            bound.delete()

    assert timezone.now() - beat.beat_at < timedelta(seconds=30)


# ---------------------------------------------------------------- who sees what


@pytest.fixture
def worker_gone_quiet(settings) -> None:
    """A worker last heard from long ago, on a named host; beat fine."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.REDIS_URL = ""
    heartbeats.record(heartbeats.BEAT)
    Heartbeat.objects.update_or_create(
        role=heartbeats.WORKER,
        defaults={"host": "worker-7.internal", "beat_at": timezone.now() - timedelta(hours=1)},
    )


def test_anyone_hears_only_up_or_down(client, worker_gone_quiet):
    response = client.get(reverse("healthz"))

    assert (response.status_code, response.json()) == (503, {"status": "down"})
    assert b"worker" not in response.content


def test_a_lead_who_is_not_an_admin_hears_only_up_or_down(client, lead, worker_gone_quiet):
    client.force_login(lead)
    assert health(client, token=None) == (503, {"status": "down"})


def test_a_wrong_token_hears_only_up_or_down(client, worker_gone_quiet):
    assert health(client, token="guess") == (503, {"status": "down"})


def test_the_metrics_token_hears_which_check_failed_and_why(client, worker_gone_quiet):
    status, body = health(client)

    assert (status, body["status"], body["down"]) == (503, "down", ["worker"])
    assert "worker-7.internal" in body["checks"]["worker"]["detail"]


def test_an_admin_hears_which_check_failed_and_why(client, worker_gone_quiet):
    from tests.support.factories import AdminFactory

    client.force_login(AdminFactory(username="ada-admin"))
    status, body = health(client, token=None)

    assert (status, body["down"]) == (503, ["worker"])
    assert "worker-7.internal" in body["checks"]["worker"]["detail"]


def test_anyone_hears_ok_when_all_is_well(client, settings):
    settings.REDIS_URL = ""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    heartbeats.record(heartbeats.BEAT)

    response = client.get(reverse("healthz"))
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
