"""Debian's Chromium driven by Playwright's sync API, for the browser tests.

We never download a browser: Playwright drives /usr/bin/chromium, which
./test installs from Debian's packages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
RESULTS_DIR = Path(__file__).resolve().parents[2] / "test-results"

# Without the background-networking flags Chromium keeps dialling Google's
# hosts, which a closed CI network refuses, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for one test. Playwright's sync API keeps an event
    loop marked as running in this thread until it stops, so it must not
    outlive the test: async tests and async_to_sync would trip over it."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run ./test, which installs Debian's chromium package.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, test_id: str) -> Path:
    """Save what the page showed, named after the test, under test-results/."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "_", test_id).strip("_") + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path
