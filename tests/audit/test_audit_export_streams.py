"""The audit exports stream under the production server (uvicorn): a few
hundred thousand events go out while the server's memory stays flat, and
every event arrives."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
import pytest
from django.db import connection

from audit.models import AuditEvent
from tests.pages.test_queue_live import browser_for
from tests.support.factories import UserFactory

EVENTS = 200_000
# Held in memory at once, the JSON Lines export of EVENTS is ~130 MB of
# strings; streamed, the server holds a batch and the database cursor's chunk.
MEMORY_BOUND_MB = 60


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS (Linux)


@pytest.fixture
def auditor(transactional_db: None) -> Any:
    return UserFactory(username="auditor", is_superuser=True, is_staff=True)


@pytest.fixture
def many_events(asgi_server: Any, auditor: Any) -> httpx.Client:
    """An auditor's logged-in client, then the events: loaded after the login,
    whose audit event would otherwise seal them all first."""
    browser = browser_for(asgi_server.url, auditor)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_auditevent
                (created_at, actor_kind, actor_id, actor_label, verb, object_type, object_id,
                 object_label, department_id, agent_id, before, after, context, prev_hash, hash)
            SELECT now(), 'system', '', 'load', 'load.test', 'approvals.action', n::text,
                   'event ' || n, 1, 1, NULL,
                   jsonb_build_object('n', n, 'note', repeat('x', 200)), '{}'::jsonb, '', ''
            FROM generate_series(1, %s) AS n
            """,
            [EVENTS],
        )
    return browser


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_streams_through_uvicorn_in_flat_memory(many_events, fmt, capsys):
    browser = many_events
    reset_peak_rss()
    before = peak_rss_mb()
    received = lines = 0
    tail = b""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with browser.stream("GET", f"/audit/export.{fmt}", timeout=300) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received += len(chunk)
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-2000:]
    growth = peak_rss_mb() - before
    with capsys.disabled():
        print(f"\n{fmt}: {EVENTS:,} events, {received / 2**20:.0f} MiB sent, server memory growth {growth:.1f} MiB")
    assert not [w for w in caught if "StreamingHttpResponse" in str(w.message)]
    exported = AuditEvent.objects.count()  # the load and whatever the test's own setup recorded
    assert lines == exported + (1 if fmt == "csv" else 0)  # the CSV has its header line
    assert f"event {EVENTS}" in tail.decode().splitlines()[-1]  # the last event made it out
    assert growth < MEMORY_BOUND_MB
