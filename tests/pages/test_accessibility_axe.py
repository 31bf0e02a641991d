"""axe-core (the axe-playwright-python package, which carries it: no CDN)
finds no serious or critical violation on the main pages: the queue, an
action page, an agent page, the department dashboard, the login page and
the 403 and 404 pages."""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.support import inbox
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BLOCKING = ("serious", "critical")


@pytest.fixture
def world(agent):
    return inbox.build(agent)


def violations(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


def test_the_main_pages_have_no_serious_or_critical_violation(world, lead, browser_page):
    page = browser_page
    found: dict[str, list[str]] = {}
    page.goto("/login/")
    found["login"] = violations(page)
    page.get_by_label("Username").fill(lead.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue/$"))
    expect(page.locator("#preview-pane .pane")).to_be_visible()  # the pane filled in, as a lead sees it
    found["queue"] = violations(page)
    for name, url in (
        ("action page", f"/actions/{world.email.pk}/?edit=1"),
        ("money action page", f"/actions/{world.refund.pk}/"),
        ("agent page", f"/agents/{world.agent.slug}/"),
        ("department dashboard", "/departments/finance/"),
        ("shadow lane", "/queue/?lane=shadow"),
        ("404", "/no-such-page/"),
    ):
        page.goto(url)
        found[name] = violations(page)
    # A 403 answers a POST: the form a lead should not have, sent all the same.
    page.goto("/queue/")
    page.evaluate(
        """() => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = "/gateway/pause/";
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").cloneNode();
            form.appendChild(token);
            document.body.appendChild(form);
            form.submit();
        }"""
    )
    expect(page.locator("h1")).to_have_text("Not allowed")
    found["403"] = violations(page)
    assert {name: found_ for name, found_ in found.items() if found_} == {}
