"""The embedded run says only what helps: commands that work, no warnings it
expects anyway, no 404 for the icon every browser asks for."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command

EMBEDDED_ENV = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}


def test_the_key_command_seed_demo_prints_runs_with_the_projects_interpreter(db, tmp_path):
    out = StringIO()
    call_command("seed_demo", "--history-days=0", stdout=out, stderr=StringIO())
    line = next(line for line in out.getvalue().splitlines() if "issue_agent_key" in line)
    python = line.split(": ", 1)[1].split()[0]
    # Typed in the project folder, as the line invites: that interpreter has Django.
    done = subprocess.run(  # noqa: S603  (our own command's output)
        [python, "-c", "import django"], cwd=settings.BASE_DIR, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_embedded_default_starts_without_warnings(tmp_path):
    env = {**EMBEDDED_ENV, "DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr + done.stdout
    assert "W040" not in done.stderr + done.stdout


def test_the_favicon_is_served(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301
    assert answer["Location"].endswith("/favicon.svg")
    assert finders.find("favicon.svg")


def test_pages_name_their_icon(admin_client):
    page = admin_client.get("/queue/")
    assert b'rel="icon"' in page.content
