"""What `./run` does, for real: on the embedded default (a fresh SQLite file,
no DATABASE_URL or REDIS_URL), migrate, seed_demo and `manage.py serve` on a
free port; then log in through the login form and fetch the pages the demo
promises: a promoted agent with its chart, a dashboard with approver
analytics, a quiet alert badge, the demo mailbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from approvals.demo import organisation as demo
from tests.support.servers import free_port, wait_for


def _embedded_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATA_DIR=str(data_dir), SITE_URL=f"http://127.0.0.1:{port}", PYTHONUNBUFFERED="1")
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  (our own manage.py)
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=True
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The product as ./run starts it; its URL and what seed_demo printed."""
    data_dir, port = tmp_path_factory.mktemp("run"), free_port()
    env = _embedded_env(data_dir, port)
    _manage(env, "migrate", "--noinput", "-v0")
    seeded = _manage(env, "seed_demo").stdout
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=60, what="manage.py serve")
        yield url, seeded
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False


@contextmanager
def logged_in(url: str, username: str) -> Iterator[httpx.Client]:
    """A browser-like client, logged in through the login form (its CSRF token and all)."""
    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as browser:
        form = browser.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        answer = browser.post(
            "/login/",
            data={"username": username, "password": demo.DEFAULT_PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{url}/login/"},
        )
        assert answer.status_code == 200 and "/login/" not in str(answer.url), username
        yield browser


def test_seed_demo_prints_one_line_per_mail_and_its_history(running):
    _, seeded = running
    assert re.search(r"Wrote 30 days of history: \d{3,} actions\.", seeded)
    mails = [line for line in seeded.splitlines() if line.startswith("Mail to ")]
    assert mails and all(line.endswith("(read it at /demo/mail/)") for line in mails)
    assert "Hello " not in seeded  # no mail body on the console


def test_the_promoted_agent_shows_its_chart_and_the_dashboard_its_approvers(running):
    url, _ = running
    with logged_in(url, "admin") as admin:
        agent = admin.get("/agents/refund-bot/").text
        assert "bar-volume" in agent and "contributor → executor" in agent
        assert 'id="flagged-decisions"' in agent
        assert "Decision needed in Finance" in admin.get("/demo/mail/").text  # seed_demo's mail, from its process
    with logged_in(url, "fiona") as fiona:
        dashboard = fiona.get("/departments/finance/").text
        assert 'id="decision-analytics"' in dashboard
        assert "Marcus Webb" in dashboard and "faster than their preview can be read" in dashboard
        # Fiona leads Finance only: the reach rule keeps the others' dashboards private.
        assert fiona.get("/departments/sales/").status_code == 404


def test_the_alert_badge_is_quiet_at_the_start(running):
    url, _ = running
    with logged_in(url, "admin") as admin:
        alerts = admin.get("/alerts/").text
        assert 'class="acknowledge"' not in alerts
