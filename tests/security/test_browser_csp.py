"""The Content-Security-Policy in Chromium: every page a lead and an admin
open works under it (the live queue, htmx's decisions, the admin's widgets,
the API's docs) and the browser reports no violation. A page that needed an
inline script, style or event handler would report one here."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.pages import test_browser_queue as queue_page
from tests.support.factories import PASSWORD, UserFactory

# The queue's browser tests' fixtures, shared.
refund_type, agent_key, background = queue_page.refund_type, queue_page.agent_key, queue_page.background

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Registered before any page script runs (Playwright's init scripts are not subject to the policy).
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${where}`);
});
"""


@pytest.fixture
def watched(browser_page: Page) -> Iterator[tuple[Page, list[str]]]:
    """The page, and every violation it reports: the DOM event and the console's "Refused to ..." lines."""
    reported: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            reported.append(message.text)

    browser_page.context.add_init_script(LISTEN)
    browser_page.on("console", console)
    yield browser_page, reported


def violations(page: Page, console: list[str]) -> list[str]:
    return page.evaluate("window.__violations") + console


def visit(page: Page, path: str, console: list[str]) -> None:
    response = page.goto(path)
    assert response is not None and response.status == 200, (path, response and response.status)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_load_state("load")
    assert violations(page, console) == [], path


def test_a_leads_pages_work_under_the_policy_and_report_no_violation(
    asgi_server, lead, agent, refund_type, agent_key, background, watched
):
    page, console = watched
    queue_page.open_queue(page, lead.username)  # the socket said hello: scripts, htmx and the ws extension all ran

    # A live push, then a decision through htmx, both under the policy.
    action_id = background(queue_page.propose_over_api, asgi_server.url, agent_key, "payments.refund").result(
        timeout=10
    )
    row = page.locator(f"#action-{action_id}")
    expect(row).to_contain_text("payments.refund")
    row.get_by_role("button", name=re.compile("^Approve")).click()
    expect(row).to_have_count(0)
    assert violations(page, console) == []

    for path in [
        "/queue/?lane=shadow",
        f"/actions/{action_id}/",
        "/agents/",
        f"/agents/{agent.slug}/",
        "/dashboard/",
        "/alerts/",
        "/reviews/",
        "/settings/",
        "/api/docs/",
    ]:
        visit(page, path, console)
        if path == "/api/docs/":  # Swagger UI drew the schema it fetched
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Countersign agent API")
    assert violations(page, console) == []


@pytest.fixture
def admin(db):
    return UserFactory(username="ada-admin", is_staff=True, is_superuser=True)


@pytest.fixture
def proposed(propose):
    return propose(reasoning="Refund the duplicate charge.", payload={"note": "refund order A-1187"})


def test_the_admin_works_under_the_policy_and_reports_no_violation(asgi_server, department, proposed, admin, watched):
    page, console = watched
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(admin.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))

    for path in [
        "/admin/",
        "/admin/approvals/action/",
        "/admin/agents/agentkey/add/",
        "/admin/audit/auditevent/",
        f"/admin/approvals/action/{proposed.pk}/change/",  # the payload and context as JSON
        f"/admin/approvals/department/{department.pk}/change/",
    ]:
        visit(page, path, console)
    page.goto("/admin/audit/auditevent/")
    page.locator("#result_list tbody tr a").first.click()  # an event's before and after as JSON
    expect(page.locator("pre.json").first).to_be_visible()
    assert violations(page, console) == []
    visit(page, f"/admin/approvals/department/{department.pk}/change/", console)
    # The leads' two-box picker is drawn by the admin's own scripts.
    expect(page.locator("#id_leads_from")).to_be_visible()
    assert violations(page, console) == []
