"""Triage on /queue/: filters by agent, action type, risk and SLA state,
a search in the reasoning and the payload, a sort, all in the URL (a GET
form, bookmarkable), with counts per filter; and bulk approval that says, for
each row it cannot take, why."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from approvals.models import Action
from approvals.rules.lifecycle import Status
from tests.support import inbox

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def world(agent):
    return inbox.build(agent)


@pytest.fixture
def lead_client(lead) -> Client:
    client = Client()
    client.force_login(lead)
    return client


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="action-([0-9a-f-]+)" class="row', html)


def ids(*actions: Action) -> list[str]:
    return [str(action.pk) for action in actions]


def test_it_filters_by_agent_type_risk_and_sla(world, lead_client):
    get = lambda query: rows(lead_client.get(f"/queue/?{query}").content.decode())  # noqa: E731
    assert sorted(get("")) == sorted(ids(world.email, world.refund, world.deletion))
    assert get("agent=mail-bot") == ids(world.email)
    assert sorted(get("agent=refund-bot")) == sorted(ids(world.refund, world.deletion))
    assert get("type=payments.refund") == ids(world.refund)
    assert get("risk=critical") == ids(world.deletion)
    assert get("risk=low&agent=mail-bot") == []
    Action.objects.filter(pk=world.refund.pk).update(sla_deadline=timezone.now() - timedelta(minutes=5))
    assert get("sla=overdue") == ids(world.refund)
    Action.objects.filter(pk=world.email.pk).update(sla_deadline=timezone.now() + timedelta(minutes=20))
    assert get("sla=due_soon") == ids(world.email)
    assert get("sla=on_time") == ids(world.deletion)


def test_it_searches_the_reasoning_and_the_payload(world, lead_client):
    get = lambda q: rows(lead_client.get("/queue/", {"q": q}).content.decode())  # noqa: E731
    assert get("charged TWICE") == ids(world.refund)  # reasoning, any case
    assert get("con-778") == ids(world.deletion)  # a payload value
    assert get("ana@customer") == ids(world.email)
    assert sorted(get("ORD-104233")) == sorted(ids(world.email, world.refund))  # subject and order id
    assert get("nothing like this") == []


def test_it_sorts_as_asked(world, lead_client):
    get = lambda sort: rows(lead_client.get(f"/queue/?sort={sort}").content.decode())  # noqa: E731
    assert get("newest") == ids(world.deletion, world.refund, world.email)
    assert get("oldest") == ids(world.email, world.refund, world.deletion)
    assert get("confidence") == ids(world.deletion, world.email, world.refund)
    assert get("amount")[0] == str(world.refund.pk)  # the only one moving money first


def test_the_filter_form_is_a_get_form_with_counts_and_keeps_what_was_asked(world, lead_client):
    html = lead_client.get("/queue/?agent=refund-bot&q=twice&sort=oldest").content.decode()
    form = re.search(r'<form class="filters" method="get".*?</form>', html, re.S)[0]
    assert '<option value="mail-bot">Mail Bot (1)</option>' in form
    assert '<option value="refund-bot" selected>Refund Bot (2)</option>' in form
    assert '<option value="critical">Critical (1)</option>' in form
    assert '<option value="payments.refund">payments.refund (1)</option>' in form
    assert 'name="q" value="twice"' in form
    assert '<option value="oldest" selected>' in form
    assert "1 pending matches your filters." in html


def test_bad_filter_values_are_dropped_not_refused(world, lead_client):
    response = lead_client.get("/queue/?risk=huge&sla=whenever&sort=sideways&agent=nobody")
    assert response.status_code == 200
    assert rows(response.content.decode()) == []  # only the unknown agent narrows: to nothing


def test_the_pager_and_the_resync_keep_the_filters(agent, lead_client, propose):
    for _ in range(51):
        propose(reasoning="A routine refund.")
    html = lead_client.get("/queue/?q=routine&sort=oldest").content.decode()
    assert 'href="?q=routine&amp;sort=oldest&amp;page=2"' in html
    # The socket's re-sync asks for the page's own URL: the filters come with it.
    assert 'hx-get="/queue/?q=routine&amp;sort=oldest"' in html
    assert len(rows(lead_client.get("/queue/?q=routine&page=2", **HTMX).content.decode())) == 1


def test_each_row_says_why_it_cannot_be_approved_in_bulk(world, lead_client, agent, lead, propose):
    html = lead_client.get("/queue/").content.decode()

    def row(action: Action) -> str:
        return re.search(rf'<tr id="action-{action.pk}".*?</tr>', html, re.S)[0]

    assert 'name="action"' in row(world.refund) and "bulk-why" not in row(world.refund)
    assert "Not for bulk approval: high risk: needs review" in row(world.email)
    assert 'name="action"' not in row(world.email)
    assert "Not for bulk approval: needs two approvers" in row(world.deletion)
    assert "Select all eligible" in html
    agent.owner = lead
    agent.save()
    html = lead_client.get("/queue/").content.decode()
    assert "Not for bulk approval: you own this agent" in row(world.refund)


def test_bulk_approval_refuses_each_ineligible_row_with_its_reason(world, lead_client):
    posted = ids(world.refund, world.email, world.deletion)
    html = lead_client.post("/queue/bulk-approve/", {"action": posted}, **HTMX).content.decode()
    assert "High risk: needs review. Open it to decide." in html
    assert "Needs two approvers. Open it to decide." in html
    statuses = dict(Action.objects.filter(pk__in=posted).values_list("pk", "status"))
    assert statuses == {
        world.refund.pk: Status.APPROVED,
        world.email.pk: Status.PENDING,
        world.deletion.pk: Status.PENDING,
    }


def test_a_search_pages_through_its_matches_read_once_and_says_when_it_stops(world, lead_client, monkeypatch):
    from approvals.reads import queue_filters

    monkeypatch.setattr(queue_filters, "SEARCH_LIMIT", 2)
    html = lead_client.get("/queue/", {"q": "o"}).content.decode()  # every row has an "o"
    assert len(rows(html)) == 2
    assert "The first 2 pending match your filters: narrow the search to see the rest." in html
