"""At 390 px wide (a phone) the queue, an action page, an agent page and the
department dashboard fit the screen: no horizontal scrolling, and approve,
reject and edit within reach on the queue and the action page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support import inbox
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 390


@pytest.fixture
def world(agent):
    return inbox.build(agent)


def log_in(page: Page, username: str) -> None:
    page.goto("/login/?next=/queue/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue/$"))


def page_width(page: Page) -> int:
    return page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")


def assert_within_the_screen(control: Locator) -> None:
    # One call finds the control, scrolls to it and measures it, so a live re-render of its row
    # between those steps cannot detach what is measured. Nothing of it may lie off the sides.
    expect(control).to_be_visible()
    box = control.evaluate(
        """(el) => { el.scrollIntoView({block: "center"});
                     const r = el.getBoundingClientRect(); return {x: r.left, width: r.width}; }"""
    )
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, box


def test_the_four_pages_fit_390_px_with_the_decisions_in_reach(world, lead, browser_page):
    page = browser_page
    page.set_viewport_size({"width": WIDTH, "height": 844})
    # The socket's first open re-renders the lane; measure the rows it leaves, not the ones it replaces.
    page.add_init_script(
        """document.addEventListener("htmx:afterSettle",
            (e) => { if (e.detail.target && e.detail.target.id === "lane") window.resynced = true; })"""
    )
    log_in(page, lead.username)
    page.wait_for_function("() => window.resynced === true")

    assert page_width(page) <= WIDTH, "the queue scrolls sideways"
    row = page.locator(f"#action-{world.email.pk}")
    assert_within_the_screen(row.get_by_role("button", name="Approve"))
    assert_within_the_screen(row.locator("summary", has_text="Reject"))
    assert_within_the_screen(row.get_by_role("link", name="Edit"))
    expect(row).to_contain_text("Email to ana@customer.example")
    row.locator("summary", has_text="Reject").click()
    assert_within_the_screen(row.get_by_label("Reason for rejecting email.send_external"))
    assert page_width(page) <= WIDTH, "the open reject form scrolls sideways"

    page.goto(f"/actions/{world.email.pk}/")
    assert page_width(page) <= WIDTH, "the action page scrolls sideways"
    panel = page.locator("#decision-panel")
    assert_within_the_screen(panel.get_by_role("button", name="Approve", exact=True))
    assert_within_the_screen(panel.get_by_role("button", name="Reject"))
    assert_within_the_screen(panel.get_by_role("button", name="Review changes"))

    for url in (f"/agents/{world.agent.slug}/", "/departments/finance/"):
        page.goto(url)
        assert page.locator("h1").count() == 1
        assert page_width(page) <= WIDTH, f"{url} scrolls sideways"
