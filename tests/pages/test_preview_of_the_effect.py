"""A lead sees what an action will do before deciding: each payload rendered
from its type's JSON Schema (titles, descriptions, formats, money, long
text), with the template the admin chose or the one its fields call for; a
one-line summary on the queue row; the preview pane beside the queue, through
the reach rule, with the reasoning, confidence, the policy's reason and the
agent's record. Everything the agent wrote is shown as text."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from approvals.models import ActionType, PreviewTemplate, PromotionPolicy
from approvals.reads import previews
from tests.support import inbox
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def world(agent):
    return inbox.build(agent)


@pytest.fixture
def lead_client(lead) -> Client:
    client = Client()
    client.force_login(lead)
    return client


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_it_sums_up_each_kind_of_effect_in_one_line():
    email = inbox.email_type()
    assert previews.summary_of(email, {"to": ["x@y.com", "z@y.com"], "subject": "Hello", "body": "Hi"}) == (
        "Email to x@y.com (+1): Hello"
    )
    refund = inbox.refund_type()
    assert previews.summary_of(refund, {"order_id": "ORD-104233", "amount": 45, "currency": "EUR"}) == (
        "Refund €45.00 on ORD-104233"
    )
    assert previews.summary_of(refund, {"order_id": "ORD-104233", "amount": 1200.5, "currency": "GBP"}) == (
        "Refund £1,200.50 on ORD-104233"
    )
    deletion = inbox.deletion_type()
    assert previews.summary_of(deletion, {"system": "crm", "record_type": "lead", "record_id": "L-1"}) == (
        "Delete lead L-1 in crm"
    )
    plain = ActionType(slug="crm.update", name="Update", payload_schema={"title": "Lead", "properties": {}})
    assert previews.summary_of(plain, {"lead_id": "L-9", "owner": "bo@x.com"}) == "Lead: Lead id: L-9; Owner: bo@x.com"


def test_it_reads_titles_descriptions_and_formats_from_the_schema():
    preview = previews.preview_of(
        inbox.email_type(),
        {
            "to": ["ana@x.com"],
            "subject": "Hi",
            "body": "Line one\nline two",
            "send_on": "2026-12-07",
            "link": "https://x.com/a",
            "extra": "not in the schema",
        },
    )
    kinds = {f.path: (f.label, f.kind) for f in preview.fields}
    assert kinds == {
        "to": ("To", "list"),
        "subject": ("Subject", "text"),
        "body": ("Body", "paragraph"),
        "send_on": ("Send on", "date"),
        "link": ("Link", "uri"),
        "extra": ("Extra", "text"),  # what the schema does not know still shows
    }
    assert preview.by_path["send_on"].description == "The day it goes out."
    assert preview.template == PreviewTemplate.EMAIL
    assert [f.path for f in preview.head] == ["to", "subject"] and preview.body.path == "body"
    money = previews.preview_of(inbox.refund_type(), {"order_id": "ORD-1", "amount": 9.5, "currency": "USD"})
    assert money.by_path["amount"].kind == "money" and money.money == "$9.50"


def test_the_template_chosen_in_the_admin_wins_over_the_automatic_one():
    email = inbox.email_type(preview_template=PreviewTemplate.GENERIC)
    preview = previews.preview_of(email, {"to": ["a@b.com"], "subject": "S", "body": "B"})
    assert preview.template == PreviewTemplate.GENERIC
    assert preview.template_name == "approvals/previews/generic.html"
    assert {choice for choice, _ in PreviewTemplate.choices} == {"", *map(str, previews.TEMPLATES)}


def test_a_queue_row_shows_the_effect_in_one_line(world, lead_client):
    html = lead_client.get("/queue/").content.decode()
    assert "Email to ana@customer.example: Your refund for order ORD-104233" in html
    assert "Refund €45.00 on ORD-104233" in html
    assert "Delete contact CON-778 in crm" in html


def test_the_preview_pane_shows_the_effect_reasoning_confidence_policy_and_record(world, lead_client):
    # The record's window is the department's promotion policy's, as on every page and in the API.
    PromotionPolicy.objects.update_or_create(department=None, defaults={"window_days": 30})
    response = lead_client.get(f"/queue/preview/{world.email.pk}/")
    assert response.status_code == 200
    text = text_of(response.content.decode())
    assert "To ana@customer.example" in text
    assert "Subject Your refund for order ORD-104233" in text
    assert "Hello Ana, we refunded the duplicate charge. Regards" in text
    assert "The customer asked where her money is." in text
    assert "Confidence 0.81" in text
    assert "Policy Needs a human" in text
    assert "Tier Contributor (every action waits for a human) for email.send_external" in text
    assert "No human decisions on this capability in 30 days" in text
    assert "Not eligible: high risk: needs review" in text
    refund = text_of(lead_client.get(f"/queue/preview/{world.refund.pk}/").content.decode())
    assert "€45.00" in refund and "Bulk approval Eligible" in refund


def test_the_preview_pane_is_for_those_who_see_the_action_only(world):
    stranger = Client()
    stranger.force_login(UserFactory(username="sven-sales"))
    assert stranger.get(f"/queue/preview/{world.email.pk}/").status_code == 404
    assert Client().get(f"/queue/preview/{world.email.pk}/").status_code == 302  # to the login


def test_every_preview_shows_agent_text_as_text(agent, lead_client):
    action = inbox.propose(
        agent,
        inbox.email_type(),
        {"to": ["a@b.com"], "subject": HOSTILE, "body": HOSTILE + "\n" + HOSTILE, "link": 'javascript:alert("x")'},
        HOSTILE,
        "0.5",
    )
    for url in ("/queue/", f"/queue/preview/{action.pk}/", f"/actions/{action.pk}/"):
        html = lead_client.get(url).content.decode()
        assert HOSTILE not in html, url
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html, url
        assert 'href="javascript:' not in html, url  # an address is shown, never made a link


def test_the_action_page_shows_what_it_will_do(world, lead_client):
    text = text_of(lead_client.get(f"/actions/{world.refund.pk}/").content.decode())
    assert "What it will do €45.00 Refund Order id ORD-104233" in text
