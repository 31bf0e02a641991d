"""The gateway's pause from the agents page: admins only, a reason both
ways, audited like the admin's switch, a banner on every page while it
holds, and every proposal refused meanwhile."""

from __future__ import annotations

import pytest
from django.test import Client

from approvals.models import GatewayState
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client, assert_error, post_json
from tests.api.test_api_proposals import granted, refund
from tests.support.factories import AdminFactory

pytestmark = pytest.mark.django_db

PAUSE, RESUME = "/gateway/pause/", "/gateway/resume/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def logged_in(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def gateway_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb__startswith="gateway.").order_by("id"))


@pytest.fixture
def admin(db):
    return AdminFactory(username="ada-admin")


@pytest.fixture
def paused(admin):
    GatewayState.objects.update_or_create(
        id=1, defaults={"paused": True, "reason": "Incident 42.", "changed_by": admin}
    )


def test_an_admin_pauses_the_gateway_with_a_reason(admin):
    response = logged_in(admin).post(PAUSE, {"reason": "Incident 42: payments double-booked."}, follow=True)
    assert response.redirect_chain == [("/agents/", 302)]
    state = GatewayState.current()
    assert (state.paused, state.reason, state.changed_by) == (True, "Incident 42: payments double-booked.", admin)
    assert state.changed_at is not None
    [event] = gateway_events()
    # The same record as a pause in the Django admin (tests/admin/test_admin_gateway.py).
    assert (event.verb, event.actor_label, event.before, event.after) == (
        "gateway.paused",
        "ada-admin",
        {"paused": False},
        {"paused": True, "reason": "Incident 42: payments double-booked."},
    )
    assert messages_of(response) == ["The gateway is paused: no proposal is accepted and nothing is dispatched."]


def test_pausing_needs_a_reason(admin):
    response = logged_in(admin).post(PAUSE, {"reason": " "}, follow=True)
    assert messages_of(response) == ["Say why you are pausing the gateway."]
    assert not GatewayState.current().paused
    assert gateway_events() == []


def test_an_admin_resumes_with_a_reason(admin, paused):
    client = logged_in(admin)
    response = client.post(RESUME, {"reason": ""}, follow=True)
    assert messages_of(response) == ["Say why you are resuming the gateway."]
    assert GatewayState.current().paused

    response = client.post(RESUME, {"reason": "Incident closed."}, follow=True)
    assert messages_of(response) == ["The gateway is running again."]
    assert not GatewayState.current().paused
    [event] = gateway_events()
    assert (event.verb, event.after) == ("gateway.resumed", {"paused": False, "reason": "Incident closed."})


def test_pausing_a_paused_gateway_changes_nothing(admin, paused):
    response = logged_in(admin).post(PAUSE, {"reason": "Again."}, follow=True)
    assert messages_of(response) == ["The gateway was already paused."]
    assert GatewayState.current().reason == "Incident 42."
    assert gateway_events() == []


def test_leads_and_owners_may_not_pause_or_resume(lead, owner, department):
    for user in (lead, owner):
        client = logged_in(user)
        assert client.post(PAUSE, {"reason": "Because."}).status_code == 403
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True})
    assert logged_in(lead).post(RESUME, {"reason": "Because."}).status_code == 403
    assert GatewayState.current().paused
    assert gateway_events() == []


def test_strangers_go_to_the_login_page(client, db):
    response = client.post(PAUSE, {"reason": "Because."})
    assert (response.status_code, response["Location"].startswith("/login/")) == (302, True)


def test_the_switch_refuses_a_post_without_the_csrf_token(admin):
    client = logged_in(admin, enforce_csrf_checks=True)
    assert client.post(PAUSE, {"reason": "Drill."}).status_code == 403
    client.get("/agents/")
    token = client.cookies["csrftoken"].value
    assert client.post(PAUSE, {"reason": "Drill.", "csrfmiddlewaretoken": token}).status_code == 302
    assert GatewayState.current().paused


def test_only_admins_see_the_switch_on_the_agents_page(admin, lead, department):
    assert 'action="/gateway/pause/"' in logged_in(admin).get("/agents/").content.decode()
    assert "/gateway/" not in logged_in(lead).get("/agents/").content.decode()


def test_it_answers_htmx_with_the_switch_the_banner_and_the_flash(admin):
    html = logged_in(admin).post(PAUSE, {"reason": "Drill."}, **HTMX).content.decode()
    assert html.lstrip().startswith('<section id="gateway"')
    assert 'action="/gateway/resume/"' in html
    assert '<div id="gateway-banner" hx-swap-oob="true">' in html
    assert "The gateway is paused.</strong>" in html and "Drill." in html
    assert "The gateway is paused: no proposal is accepted" in html  # the flash


def test_every_logged_in_page_carries_the_banner_while_paused(lead, propose, paused):
    action = propose()
    client = logged_in(lead)
    for url in ("/queue/", f"/actions/{action.pk}/", "/agents/", "/agents/refund-bot/", "/audit/", "/settings/"):
        html = client.get(url).content.decode()
        assert "The gateway is paused.</strong>" in html, url
        assert "Paused by ada-admin" in html and "Incident 42." in html, url
        assert "Resume it" not in html, url  # only admins resume


def test_the_banner_points_admins_to_the_switch(admin, paused):
    assert 'href="/agents/#gateway">Resume it</a>' in logged_in(admin).get("/queue/").content.decode()


def test_no_banner_while_running_or_before_login(lead, client, department):
    assert "The gateway is paused" not in logged_in(lead).get("/queue/").content.decode()
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True})
    assert "The gateway is paused" not in client.get("/login/").content.decode()


def test_every_proposal_is_refused_while_paused_and_accepted_after(admin, agent):
    granted(agent)
    agent_api = api_client(agent)
    client = logged_in(admin)
    client.post(PAUSE, {"reason": "Drill."})
    assert_error(post_json(agent_api, "/api/v1/actions/", refund()), 403, "gateway_paused")
    client.post(RESUME, {"reason": "Drill over."})
    assert (
        post_json(agent_api, "/api/v1/actions/", refund(payload={"order": "A-2", "amount": 1}, amount=...)).status_code
        == 201
    )
