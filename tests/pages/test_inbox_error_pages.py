"""403, 404 and 500 are pages of the product, with its navigation; the 500
page renders with no request and no database (it may be what failed). The
top bar marks the page the reader is on."""

from __future__ import annotations

import re

import pytest
from django.test import Client, RequestFactory
from django.views import defaults

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead_client(lead) -> Client:
    client = Client()
    client.force_login(lead)
    return client


def test_a_missing_page_is_styled_and_offers_the_way_back(lead_client):
    response = lead_client.get("/no-such-page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert '<h1 id="error-title">Not found</h1>' in html
    assert 'href="/static/countersign/app.css"' in html or "countersign/app.css" in html
    assert '<nav aria-label="Where to go">' in html and 'href="/queue/">Your queue</a>' in html
    assert '<nav aria-label="Main">' in html  # the top bar, as on every page


def test_a_refusal_is_styled_and_says_why(lead_client):
    response = lead_client.post("/gateway/pause/", {"reason": "Trying."})
    html = response.content.decode()
    assert response.status_code == 403
    assert '<h1 id="error-title">Not allowed</h1>' in html
    assert "Only admins pause or resume the gateway." in html
    assert 'href="/agents/">Agents</a>' in html


def test_anonymous_readers_of_a_missing_page_are_offered_the_login():
    html = Client().get("/no-such-page/").content.decode()
    assert 'href="/login/">Log in</a>' in html


def test_the_server_error_page_needs_no_request_context_and_no_database(django_assert_num_queries):
    request = RequestFactory().get("/queue/")
    with django_assert_num_queries(0):
        response = defaults.server_error(request)
    html = response.content.decode()
    assert response.status_code == 500
    assert "Something failed on our side" in html
    assert 'href="/queue/">Queue</a>' in html and 'href="/login/">Log in again</a>' in html


@pytest.mark.parametrize(
    ("url", "current"),
    [
        ("/queue/", "Queue"),
        ("/queue/?lane=shadow", "Shadow lane"),
        ("/agents/", "Agents"),
        ("/dashboard/", "Dashboard"),
        ("/audit/", "Audit"),
        ("/settings/", "Notifications"),
    ],
)
def test_the_top_bar_marks_the_current_page(lead_client, department, url, current):
    response = lead_client.get(url, follow=True)
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', response.content.decode(), re.S)[1]
    assert re.findall(r'<a [^>]*aria-current="page"[^>]*>([^<]+)</a>', nav) == [current]
