"""Screenshots of Countersign's main pages, taken from the real product.

    .venv/bin/python docs/screenshots/make.py            # about 6 minutes: waits for the scripted anomaly
    .venv/bin/python docs/screenshots/make.py --no-wait  # at once: the alerts page is still quiet

What it does, as `./run` does: on the embedded default (a fresh SQLite file
in a temporary folder; DATABASE_URL and REDIS_URL unset), `migrate`,
`seed_demo` (30 days of history) and `serve` on a free port, with its
scheduler and simulated fleet. Then Debian's Chromium, driven by Playwright,
logs in through the login form and saves each page as PNG next to this file
(full length; the audit trail and the Sales queue, long lists, their first
screen). It prints how long each page took to load in the browser.

It checks what the demo promises on the way: the agent page has its chart,
the dashboard its approver analytics, the alert badge is quiet before the
scripted anomaly and shows it after; it exits non-zero if not.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
CHROMIUM_ARGS.append("--disable-sync")
PASSWORD = "countersign-demo"  # noqa: S105  (approvals.demo.organisation.DEFAULT_PASSWORD, printed by seed_demo)
WIDTH, HEIGHT = 1280, 800
ANOMALY_WAIT_SECONDS = 8 * 60  # the fleet's loop starts 4 minutes in; the detectors run every minute


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(probe: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out after {seconds:.0f} s waiting for {what}.")
        time.sleep(1)


@contextmanager
def product(data_dir: Path) -> Iterator[str]:
    """The product on the embedded default, seeded, serving on a free port; its URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    port = _free_port()
    env.update(DATA_DIR=str(data_dir), SITE_URL=f"http://127.0.0.1:{port}", PYTHONUNBUFFERED="1")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)  # noqa: S603
    started = time.monotonic()
    seeded = subprocess.run(  # noqa: S603
        [python, "manage.py", "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    history = next((line for line in seeded.stdout.decode().splitlines() if line.startswith("Wrote ")), "no history")
    print(f"seed_demo: {time.monotonic() - started:.1f} s. {history}")
    log = open(data_dir / "serve.log", "wb")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(  # noqa: S603
        [python, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _answers(url), 60, "the server")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
            return True
    except OSError:
        return False


def log_in(page: Page, url: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("networkidle")


def shoot(page: Page, url: str, path: str, name: str, *, full_page: bool = True) -> str:
    started = time.monotonic()
    answer = page.goto(f"{url}{path}")
    if answer is None or answer.status != 200:
        raise SystemExit(f"{path} answered {answer.status if answer else 'nothing'}")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(HERE / f"{name}.png"), full_page=full_page)
    # Loaded in: the answer, then the page's assets and sockets until the network is quiet.
    print(f"{name + '.png':<16} {path:<48} loaded in {1000 * (time.monotonic() - started):5.0f} ms")
    return page.content()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-wait", action="store_true", help="Do not wait for the scripted anomaly.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="countersign-shots-") as folder, product(Path(folder)) as url:
        up = time.monotonic()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})

            log_in(page, url, "fiona")  # Head of Finance Operations
            shoot(page, url, "/queue/", "queue")
            href = page.locator("a[href^='/actions/']").first.get_attribute("href")
            shoot(page, url, href or "/queue/", "action")
            dashboard = shoot(page, url, "/departments/finance/", "dashboard")
            if "decision-analytics" not in dashboard or "Marcus Webb" not in dashboard:
                raise SystemExit("The Finance dashboard shows no approver analytics.")

            log_in(page, url, "admin")
            agent = shoot(page, url, "/agents/refund-bot/", "agent")
            if not re.search(r"<rect[^>]+bar-volume", agent) or "executor" not in agent:
                raise SystemExit("The refund assistant's page shows no chart or no executor grant.")
            alerts = shoot(page, url, "/alerts/", "alerts-quiet")
            print(f"alerts before the anomaly, {time.monotonic() - up:.0f} s after start: {_open_alerts(alerts)}")
            shoot(page, url, "/audit/", "audit", full_page=False)  # a long list: its first screen
            shoot(page, url, "/demo/mail/", "mail")
            if not args.no_wait:
                page.goto(f"{url}/alerts/")
                _until(lambda: _open_alerts(_reload(page)) > 0, ANOMALY_WAIT_SECONDS, "the scripted anomaly's alert")
                print(f"the anomaly's alert came {time.monotonic() - up:.0f} s after start")
                shoot(page, url, "/alerts/", "alerts")
                log_in(page, url, "leo")  # the Sales lead, whose agent looped
                shoot(page, url, "/queue/", "queue-leo", full_page=False)
            browser.close()


def _reload(page: Page) -> str:
    page.reload()
    page.wait_for_load_state("networkidle")
    return page.content()


def _open_alerts(html: str) -> int:
    """Open alerts on /alerts/: each has its Acknowledge button."""
    return html.count('class="acknowledge"')


if __name__ == "__main__":
    main()
