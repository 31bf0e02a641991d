"""The lead's inbox in Chromium, on the real ASGI app: the preview pane
follows j/k and shows what the focused action will do; the filters and the
search narrow the queue through the URL; the edit form built from the
schema shows the changed fields before it sends them, and the action page
then shows each field proposed, approved and executed; and at 390 px the
queue, action, agent and dashboard pages fit the screen, with approve,
reject and edit in reach."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from playwright.sync_api import Page, WebSocket, expect

from agents.services import issue_key
from approvals.models import Action
from approvals.rules.lifecycle import Status
from audit.log import Actor
from tests.support import inbox
from tests.support.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(agent):
    return inbox.build(agent)


def log_in(page: Page, username: str, then: str = "/queue/") -> None:
    page.goto(f"/login/?next={then}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(then.split("?")[0])))


def pane(page: Page):
    return page.locator("#preview-pane")


def test_the_preview_pane_follows_j_and_k_and_shows_the_effect(world, lead, browser_page):
    page = browser_page
    log_in(page, lead.username)
    # Most urgent first: the deletion (critical), the email (high), the refund.
    order = page.locator("#pending-rows tr.row").evaluate_all("rows => rows.map(r => r.id)")
    assert order == [f"action-{a.pk}" for a in (world.deletion, world.email, world.refund)]
    expect(pane(page)).to_contain_text("Delete contact CON-778 in crm")  # the first row, before any key

    page.keyboard.press("j")
    expect(page.locator(f"#action-{world.deletion.pk}")).to_be_focused()
    page.keyboard.press("j")
    expect(page.locator(f"#action-{world.email.pk}")).to_be_focused()
    expect(pane(page).locator(".preview-email")).to_be_visible()
    expect(pane(page)).to_contain_text("ana@customer.example")
    expect(pane(page)).to_contain_text("Your refund for order ORD-104233")
    expect(pane(page).locator(".email-body")).to_contain_text("we refunded the duplicate charge.")
    expect(pane(page)).to_contain_text("The customer asked where her money is.")
    expect(pane(page)).to_contain_text("0.81")
    expect(pane(page)).to_contain_text("Not eligible: high risk: needs review")

    page.keyboard.press("j")
    expect(pane(page).locator(".money")).to_have_text("€45.00")
    expect(pane(page)).to_contain_text("Charged twice for the same order.")
    page.keyboard.press("k")
    expect(pane(page)).to_contain_text("Email to ana@customer.example")

    # `a` approves what the pane shows: the high-risk email, seen in full.
    page.keyboard.press("a")
    expect(page.locator(f"#action-{world.email.pk}")).to_have_count(0)
    assert Action.objects.get(pk=world.email.pk).status == Status.APPROVED


def test_a_approves_nothing_before_the_pane_shows_the_row(world, lead, browser_page):
    page = browser_page
    log_in(page, lead.username)
    expect(pane(page)).to_have_attribute("data-action", f"action-{world.deletion.pk}")
    # The pane is slow to answer: the lead presses `a` on the next row before it shows it.
    page.route(re.compile(r"/queue/preview/"), lambda route: None)  # held: never answered
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator(f"#action-{world.email.pk}")).to_be_focused()
    page.keyboard.press("a")
    expect(pane(page)).to_have_class(re.compile(r"\basking\b"))
    assert Action.objects.get(pk=world.email.pk).status == Status.PENDING
    page.unroute(re.compile(r"/queue/preview/"))
    page.keyboard.press("a")  # asks for the preview again, answered now
    expect(pane(page)).to_have_attribute("data-action", f"action-{world.email.pk}")
    page.keyboard.press("a")
    expect(page.locator(f"#action-{world.email.pk}")).to_have_count(0)
    assert Action.objects.get(pk=world.email.pk).status == Status.APPROVED


def test_filters_and_search_narrow_the_queue_through_the_url(world, lead, browser_page):
    page = browser_page
    log_in(page, lead.username)
    rows = page.locator("#pending-rows tr.row")
    expect(rows).to_have_count(3)
    page.get_by_label("Search reasoning and payload").fill("ORD-104233")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"q=ORD-104233"))
    expect(rows).to_have_count(2)
    page.get_by_label("Agent").select_option("mail-bot")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"agent=mail-bot"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Email to ana@customer.example")
    expect(page.locator("caption.filtered")).to_contain_text("1 pending matches your filters.")
    # The URL is the bookmark: opened again, the same queue.
    page.goto(page.url)
    expect(rows).to_have_count(1)
    page.get_by_label("Risk").select_option("low")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(0)
    page.get_by_role("link", name="Show all").click()
    expect(rows).to_have_count(3)


def test_select_all_eligible_picks_the_rows_bulk_approval_takes(world, lead, browser_page):
    page = browser_page
    log_in(page, lead.username)
    page.get_by_role("button", name="Select all eligible").click()
    checked = page.locator("#pending-rows input[name=action]:checked")
    expect(checked).to_have_count(1)
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator("#bulk-results")).to_contain_text("Approved payments.refund")
    expect(page.locator(f"#action-{world.email.pk}")).to_contain_text("Not for bulk approval: high risk: needs review")


@pytest.fixture
def mailer_key(world) -> str:
    return issue_key(world.mailer, actor=Actor.system("test"))[1]


def test_the_form_edit_shows_its_diff_and_the_action_page_its_provenance(world, mailer_key, lead, browser_page):
    page = browser_page
    log_in(page, lead.username, then=f"/actions/{world.email.pk}/?edit=1")
    form = page.locator("form#edit")
    subject = form.get_by_label("Subject (required)")
    expect(subject).to_have_value("Your refund for order ORD-104233")
    # The browser validates from the schema: an empty required subject is not sent.
    subject.fill("")
    form.get_by_role("button", name="Review changes").click()
    expect(form.locator(".edit-diff")).to_be_hidden()
    assert subject.evaluate("el => el.validity.valueMissing")

    subject.fill("Your refund of €45.00")
    form.get_by_label("To (required)").fill("ana@customer.example\nbob@customer.example")
    form.get_by_role("button", name="Review changes").click()
    diff = form.locator(".edit-diff")
    expect(diff).to_be_visible()
    expect(diff.locator("tr[data-field=subject] del")).to_have_text('"Your refund for order ORD-104233"')
    expect(diff.locator("tr[data-field=subject] ins")).to_have_text('"Your refund of €45.00"')
    expect(diff.locator("tr[data-field=to] ins")).to_have_text('["ana@customer.example","bob@customer.example"]')
    expect(diff.locator("tbody tr")).to_have_count(2)  # nothing else changed
    assert Action.objects.get(pk=world.email.pk).status == Status.PENDING  # nothing sent yet
    diff.get_by_role("button", name="Confirm and approve").click()
    expect(page.locator("#decision-panel")).to_contain_text("Edited and approved")

    action = Action.objects.get(pk=world.email.pk)
    assert action.status == Status.APPROVED
    assert action.approved_payload["subject"] == "Your refund of €45.00"
    assert action.approved_payload["body"] == world.email.payload["body"]  # untouched fields as they were

    # The agent carries it out and reports over the API; the page then shows each field's way.
    base = page.url.split("/actions/")[0]
    reported = httpx.post(
        f"{base}/api/v1/actions/{action.pk}/result/",
        json={"outcome": "succeeded", "detail": {"message_id": "m-1"}},
        headers={"Authorization": f"Bearer {mailer_key}"},
    )
    assert reported.status_code == 200, reported.text
    page.reload()
    row = page.locator("table.payload-fields tr[data-field=subject]")
    expect(row.locator("td").nth(1)).to_have_text('"Your refund for order ORD-104233"')
    expect(row.locator("td").nth(2)).to_have_text('"Your refund of €45.00"')
    expect(row.locator("td.executed")).to_have_text('"Your refund of €45.00"')
    expect(row).to_contain_text("edited by lena-lead")


def test_a_schema_invalid_edit_is_refused_by_the_server_too(world, lead, browser_page):
    page = browser_page
    log_in(page, lead.username, then=f"/actions/{world.refund.pk}/?edit=1")
    form = page.locator("form#edit")
    # What the browser cannot check (a field the schema does not allow, typed as JSON),
    # the server judges: services.approve -> policy.judge_edit, like a proposal.
    form.locator("details.raw-json summary").click()
    form.locator("textarea[name=payload]").fill(
        '{"order_id": "ORD-104233", "amount": 45, "currency": "EUR", "bonus": true}'
    )
    form.get_by_role("button", name="Review changes").click()
    form.get_by_role("button", name="Confirm and approve").click()
    expect(page.locator("#payload-errors")).to_contain_text("bonus")
    assert Action.objects.get(pk=world.refund.pk).status == Status.PENDING


@pytest.fixture
def keys(world) -> dict[str, str]:
    return {agent.slug: issue_key(agent, actor=Actor.system("test"))[1] for agent in (world.agent, world.mailer)}


def propose_over_api(base: str, key: str, body: dict) -> str:
    response = httpx.post(f"{base}/api/v1/actions/", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_live_rows_are_highlighted_and_marked_when_outside_the_filters(world, keys, lead, browser_page):
    page = browser_page
    greeted = socket_greeted(page)
    log_in(page, lead.username, then="/queue/?agent=mail-bot")
    wait_until(page, greeted)
    base = page.url.split("/queue/")[0]
    expect(page.locator("#pending-rows tr.row")).to_have_count(1)

    inside = propose_over_api(
        base,
        keys["mail-bot"],
        {
            "action_type": "email.send_external",
            "payload": {"to": ["cy@customer.example"], "subject": "Welcome back", "body": "Hello Cy."},
            "reasoning": "A returning customer.",
        },
    )
    outside = propose_over_api(
        base,
        keys["refund-bot"],
        {
            "action_type": "payments.refund",
            "payload": {"order_id": "ORD-200001", "amount": 12, "currency": "EUR"},
            "reasoning": "Late delivery.",
        },
    )
    new = page.locator(f"#action-{inside}")
    expect(new).to_have_class(re.compile(r"\bfresh\b"))
    expect(new.locator(".fresh-note")).to_have_text("New")
    expect(new).to_contain_text("Email to cy@customer.example: Welcome back")
    other = page.locator(f"#action-{outside}")
    expect(other).to_have_class(re.compile(r"\boutside-filter\b"))
    expect(other.locator(".fresh-note")).to_have_text("New, outside your filter (agent)")
    # A re-sync (the socket opening again, or a reload) applies the filters on the server.
    page.reload()
    expect(page.locator(f"#action-{outside}")).to_have_count(0)
    expect(page.locator(f"#action-{inside}")).to_be_visible()


def socket_greeted(page: Page) -> threading.Event:
    """Set once the page's queue socket has its hello, i.e. it joined the groups."""
    greeted = threading.Event()

    def listen(socket: WebSocket) -> None:
        if "/ws/queue/" in socket.url:
            socket.on("framereceived", lambda payload: '"hello"' in str(payload) and greeted.set())

    page.on("websocket", listen)
    return greeted


def wait_until(page: Page, event: threading.Event, timeout_ms: int = 10_000) -> None:
    for _ in range(timeout_ms // 50):
        if event.is_set():
            return
        page.wait_for_timeout(50)  # lets Playwright deliver events meanwhile
    raise AssertionError("The queue socket never said hello.")
