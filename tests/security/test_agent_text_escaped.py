"""Text an agent controls (its reasoning, payload strings, context, its
name) carrying HTML is shown as text on every path that renders it: the
queue page, its htmx answers, the live push, the action page, the agent
pages, the admin's list and change pages, the confirm page of an email's
decision link; emails never carry the reasoning, and only the new-item
email carries the payload, as its preview, in a plain text part and an
HTML part that shows it as text (none with DECISION_EMAIL_PREVIEW off); the
API answers JSON a browser will not sniff as HTML.

Each check parses the HTML: an element the agent wrote (an <img> with an
onerror handler) must not exist, and the escaped text must be there (so the
field was rendered at all). A `|safe` on any of these template variables
fails the test for that path."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils.html import escape

from approvals.notify import emails as notifications
from approvals.pages import fanout
from tests.api.test_api_keys import api_client
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def hostile(field: str) -> str:
    """Markup that runs script if rendered as HTML, and breaks out of a <textarea> on the way."""
    return f"</textarea><img src=x-{field} onerror=alert(1)>"


class Elements(HTMLParser):
    """The elements of an HTML document that carry an event handler attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(f"<{tag} {name}={value!r}>")


def assert_shown_as_text(html: str, *fields: str) -> None:
    parser = Elements()
    parser.feed(html)
    assert parser.handlers == [], "agent text was rendered as HTML"
    for field in fields:
        assert escape(hostile(field)) in html, f"the agent's {field} is not on the page at all"


@pytest.fixture
def action(agent, propose):
    agent.name = hostile("name")
    agent.save(update_fields=["name"])
    return propose(
        reasoning=hostile("reasoning") + " The customer was charged twice.",
        payload={"note": hostile("payload")},
        context={"ticket": hostile("context"), "resources": [hostile("resource")]},
    )


@pytest.fixture
def lead_client(lead) -> Client:
    client = Client()
    client.force_login(lead)
    return client


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="ada-admin", is_staff=True, is_superuser=True))
    return client


def test_the_queue_page_shows_agent_text_as_text(lead_client, action):
    assert_shown_as_text(lead_client.get("/queue/").content.decode(), "name", "reasoning")


def test_the_queue_s_htmx_re_sync_shows_agent_text_as_text(lead_client, action):
    assert_shown_as_text(lead_client.get("/queue/", **HTMX).content.decode(), "name", "reasoning")


def test_a_decision_s_htmx_answer_shows_agent_text_as_text(lead_client, action):
    # A reject without a reason keeps the row: the answer renders it again.
    html = lead_client.post(f"/actions/{action.pk}/reject/", {"lane": "pending", "reason": " "}, **HTMX)
    assert_shown_as_text(html.content.decode(), "name", "reasoning")


def test_the_live_push_shows_agent_text_as_text(lead, action):
    pushed = fanout.updates_for(str(action.pk), [fanout.Viewer("a-lead-s-page", lead, "pending")])
    assert_shown_as_text(pushed["a-lead-s-page"], "name", "reasoning")


def test_the_action_page_shows_agent_text_as_text(lead_client, action):
    html = lead_client.get(f"/actions/{action.pk}/").content.decode()
    assert_shown_as_text(html, "name", "reasoning", "payload", "context", "resource")


def test_the_action_page_s_edit_form_keeps_the_payload_inside_its_textarea(lead_client, action):
    html = lead_client.get(f"/actions/{action.pk}/", {"edit": "1"}).content.decode()
    assert_shown_as_text(html, "payload")
    assert html.count("</textarea>") == html.count("<textarea")  # each closes only itself


def test_the_agent_pages_show_its_name_as_text(lead_client, agent, action):
    assert_shown_as_text(lead_client.get("/agents/").content.decode(), "name")
    assert_shown_as_text(lead_client.get(f"/agents/{agent.slug}/").content.decode(), "name")


def test_the_admin_s_list_pages_show_agent_text_as_text(admin_client, action):
    assert_shown_as_text(admin_client.get("/admin/approvals/action/").content.decode(), "name")
    assert_shown_as_text(admin_client.get("/admin/agents/agent/").content.decode(), "name")


def test_the_admin_s_change_pages_show_agent_text_as_text(admin_client, agent, action):
    html = admin_client.get(f"/admin/approvals/action/{action.pk}/change/").content.decode()
    assert_shown_as_text(html, "name", "reasoning", "payload", "context", "resource")
    assert_shown_as_text(admin_client.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode(), "name")


def test_emails_leave_the_reasoning_behind_and_show_the_preview_as_text(lead, action, settings):
    backup = UserFactory(username="bea-backup")
    new_item = notifications.new_action_email(action, lead)
    for email in (new_item, notifications.escalation_email(action, backup), notifications.digest_email(lead, [action])):
        text = email.subject + email.body
        assert hostile("name") in text  # shown as it is: plain text is never rendered
        for field in ("reasoning", "context", "resource"):
            assert f"x-{field}" not in text
    for email in (notifications.escalation_email(action, backup), notifications.digest_email(lead, [action])):
        message = email.message()
        assert message.get_content_type() == "text/plain" and not message.is_multipart()  # no HTML part
        assert "x-payload" not in email.body
    assert hostile("payload") in new_item.body  # the preview, in the plain text part
    [(html, mimetype)] = new_item.alternatives
    assert mimetype == "text/html"
    assert_shown_as_text(html, "name", "payload")
    assert "x-reasoning" not in html

    settings.DECISION_EMAIL_PREVIEW = False
    quiet = notifications.new_action_email(action, lead)
    assert "x-payload" not in quiet.body and "x-payload" not in quiet.alternatives[0][0]


def test_the_confirm_page_of_a_decision_link_shows_agent_text_as_text(lead_client, lead, action):
    from approvals.notify import decision_links

    path = decision_links.path_of(decision_links.issue(action, lead, decision_links.APPROVE))
    assert_shown_as_text(lead_client.get(path).content.decode(), "name", "reasoning", "payload")


def test_the_api_answers_agent_text_as_json_a_browser_does_not_sniff(agent, action):
    response = api_client(agent).get(f"/api/v1/actions/{action.pk}/")
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.json()["reasoning"].startswith(hostile("reasoning"))
