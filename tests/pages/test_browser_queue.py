"""Two leads' queues in Chromium, live over the real ASGI app (uvicorn,
Redis channel layer): a proposal made through the agent API appears in both,
one lead approves it from the keyboard, it leaves the other's screen, and
the agent's long-poll hears `approved`. Also the edit form's error, the
keyboard reject, and catching up after the socket dropped."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
from django.db import connection
from playwright.sync_api import APIResponse, BrowserContext, Page, Route, WebSocket, expect

from agents.models import Tier
from agents.services import issue_key
from approvals import services
from approvals.models import Action
from approvals.rules.lifecycle import Status
from audit.log import Actor
from tests.support.factories import PASSWORD, ActionTypeFactory, GrantFactory
from tests.support.servers import ASGIServerThread

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

T = TypeVar("T")


@pytest.fixture
def refund_type(agent):
    action_type = ActionTypeFactory(slug="payments.refund", name="Refund a payment")
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


@pytest.fixture
def agent_key(agent) -> str:
    return issue_key(agent, actor=Actor.system("test"))[1]


@pytest.fixture
def background() -> Iterator[Callable[..., Future[Any]]]:
    """Run a callable in another thread: this one's event loop belongs to
    Playwright, and blocking calls (a long-poll, async_to_sync) must not
    run in it. Nor should ORM reads: under a running loop Django's
    connection is per task, and one opened here would outlive the test.
    Connections opened in the pool are closed after each call."""

    def closing(function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        yield lambda function, *args: pool.submit(closing, function, *args)


def log_in(page: Page, username: str) -> None:
    page.goto("/login/?next=/queue/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue/$"))


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


def open_queue(page: Page, username: str) -> None:
    greeted = socket_greeted(page)
    log_in(page, username)
    wait_until(page, greeted)


def second_page(browser_page: Page, base_url: str) -> tuple[BrowserContext, Page]:
    context = browser_page.context.browser.new_context(base_url=base_url)
    context.set_default_timeout(10_000)
    return context, context.new_page()


def propose_over_api(base_url: str, key: str, slug: str, **fields: Any) -> str:
    body = {"action_type": slug, "payload": {"note": "refund order 1187"}, "reasoning": "Charged twice.", **fields}
    response = httpx.post(f"{base_url}/api/v1/actions/", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def long_poll(base_url: str, key: str, action_id: str) -> str:
    response = httpx.get(
        f"{base_url}/api/v1/actions/{action_id}/?wait=10", headers={"Authorization": f"Bearer {key}"}, timeout=15
    )
    return response.json()["status"]


def test_it_shows_a_proposal_live_to_both_leads_and_removes_it_when_one_approves(
    asgi_server, lead, other_lead, refund_type, agent_key, background, browser_page
):
    lena = browser_page
    omar_context, omar = second_page(lena, asgi_server.url)
    open_queue(lena, lead.username)
    open_queue(omar, other_lead.username)

    action_id = background(propose_over_api, asgi_server.url, agent_key, "payments.refund").result(timeout=10)

    # Pushed over the socket to both, without a reload, within a second.
    for page in (lena, omar):
        expect(page.locator(f"#action-{action_id}")).to_contain_text("payments.refund", timeout=1_000)
        expect(page.locator("#pending-count")).to_have_text("1")
    verdict = background(long_poll, asgi_server.url, agent_key, action_id)

    lena.keyboard.press("j")
    expect(lena.locator(f"#action-{action_id}")).to_be_focused()
    # `a` decides only what the preview pane shows.
    expect(lena.locator("#preview-pane")).to_have_attribute("data-action", f"action-{action_id}")
    lena.keyboard.press("a")

    expect(lena.locator(f"#action-{action_id}")).to_have_count(0)
    expect(omar.locator(f"#action-{action_id}")).to_have_count(0)
    expect(omar.locator("#pending-count")).to_have_text("0")
    expect(lena.locator("#flash")).to_contain_text("Approved payments.refund.")
    assert verdict.result(timeout=15) == Status.APPROVED
    omar_context.close()


def test_it_keeps_a_row_pushed_while_the_page_re_syncs(
    asgi_server, lead, refund_type, agent_key, background, browser_page
):
    page = browser_page
    held: list[tuple[Route, APIResponse]] = []

    def hold_the_resync(route: Route) -> None:
        if route.request.headers.get("hx-request") == "true":
            held.append((route, route.fetch()))  # rendered now, before the proposal below
        else:
            route.continue_()

    page.route(re.compile(r"/queue/(\?.*)?$"), hold_the_resync)
    open_queue(page, lead.username)
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    action_id = background(propose_over_api, asgi_server.url, agent_key, "payments.refund").result(timeout=10)
    expect(page.locator(f"#action-{action_id}")).to_be_visible()  # pushed

    # The stale answer lands after the push: it must not wipe the row.
    page.evaluate(
        """() => document.body.addEventListener("htmx:afterSwap",
            (e) => { if (e.detail.target.id === "lane") window.resynced = true; })"""
    )
    route, stale = held.pop()
    route.fulfill(response=stale)
    page.wait_for_function("window.resynced === true")
    expect(page.locator(f"#action-{action_id}")).to_be_visible()
    expect(page.locator("#pending-count")).to_have_text("1")


@pytest.fixture
def two_waiting(propose) -> tuple[Action, Action]:
    return propose(), propose()


@pytest.fixture
def waiting(propose) -> Action:
    return propose(payload={"note": "refund order 1187"})


def read_action(action_id: str) -> Action:
    return Action.objects.prefetch_related("decisions").get(pk=action_id)


def test_it_rejects_from_the_keyboard_with_a_reason(asgi_server, lead, two_waiting, background, browser_page):
    first, second = two_waiting
    page = browser_page
    open_queue(page, lead.username)

    page.keyboard.press("j")
    focused = page.locator("tr.row:focus")
    focused_id = focused.get_attribute("id")
    page.keyboard.press("r")
    reason = page.locator(f"#{focused_id} input[name=reason]")
    expect(reason).to_be_focused()
    reason.fill("Already refunded by hand.")
    reason.press("Enter")

    expect(page.locator(f"#{focused_id}")).to_have_count(0)
    rejected = background(read_action, focused_id.removeprefix("action-")).result(timeout=10)
    assert rejected.status == Status.REJECTED
    assert [d.comment for d in rejected.decisions.all()] == ["Already refunded by hand."]
    # Focus moved on to the other row, ready for the next key.
    other = second if rejected.pk == first.pk else first
    expect(page.locator(f"#action-{other.pk}")).to_be_focused()


def test_it_keeps_the_action_pending_when_the_edited_payload_is_not_json(
    asgi_server, lead, waiting, background, browser_page
):
    action = waiting
    page = browser_page
    open_queue(page, lead.username)

    page.keyboard.press("j")
    page.keyboard.press("e")  # opens the action page's edit form
    expect(page).to_have_url(re.compile(rf"/actions/{action.pk}/\?edit=1$"))
    # The form built from the schema takes the focus; the JSON stays one click away.
    expect(page.locator("form#edit .edit-fields").get_by_label("Note")).to_be_focused()
    page.get_by_text("Edit as JSON instead").click()
    payload = page.get_by_label("The payload as JSON (what is sent)")
    payload.fill('{"note": "refund order 1187",}')
    page.get_by_role("button", name="Review changes").click()
    page.get_by_role("button", name="Confirm and approve").click()

    expect(page.locator("#payload-errors")).to_contain_text("Not valid JSON")
    expect(page.locator("#decision-panel .badge")).to_have_text("Pending")
    expect(payload).to_have_value('{"note": "refund order 1187",}')
    action = background(read_action, action.pk).result(timeout=10)
    assert action.status == Status.PENDING and action.approved_payload is None


def test_it_catches_up_after_the_socket_drops(asgi_server, lead, agent, refund_type, background, browser_page):
    from config.asgi import application

    page = browser_page
    open_queue(page, lead.username)

    # The server goes away, and with it the socket...
    asgi_server.server.should_exit = True
    asgi_server.thread.join(timeout=15)
    # ...so the push for a proposal made meanwhile reaches nobody.
    missed = background(
        lambda: services.propose(agent, refund_type, payload={"note": "while down"}, reasoning="Missed?")[0].pk
    ).result(timeout=10)

    with ASGIServerThread(application, port=asgi_server.port):
        # htmx's ws extension reconnects; on open the page re-fetches its table.
        expect(page.locator(f"#action-{missed}")).to_be_visible(timeout=20_000)
        expect(page.locator("#pending-count")).to_have_text("1")


@pytest.fixture
def low_and_high(propose) -> tuple[Action, Action, Action]:
    return propose(), propose(), propose(risk="high")


def test_it_approves_selected_rows_in_bulk_and_shows_each_result(
    asgi_server, lead, low_and_high, background, browser_page
):
    low, other_low, high = low_and_high
    page = browser_page
    open_queue(page, lead.username)

    page.locator(f"#action-{low.pk}").focus()
    page.keyboard.press("x")  # selects the focused row
    page.locator(f"#action-{other_low.pk} input[name=action]").check()
    expect(page.locator(f"#action-{high.pk} input[name=action]")).to_have_count(0)  # only low risk is offered
    page.get_by_role("button", name="Approve selected").click()

    results = page.locator("#bulk-results")
    expect(results.locator("li.ok")).to_have_count(2)
    # A re-sync (as when the socket opens again) re-renders the lane, not the results.
    with page.expect_response(lambda response: "/queue/" in response.url):
        page.evaluate("htmx.trigger('#lane', 'queue-resync')")
    expect(results.locator("li.ok")).to_have_count(2)
    expect(page.locator(f"#action-{low.pk}")).to_have_count(0)
    expect(page.locator(f"#action-{other_low.pk}")).to_have_count(0)
    expect(page.locator(f"#action-{high.pk}")).to_be_visible()
    expect(page.locator("#pending-count")).to_have_text("1")
    statuses = background(lambda: sorted(Action.objects.values_list("status", flat=True))).result(timeout=10)
    assert statuses == [Status.APPROVED, Status.APPROVED, Status.PENDING]
