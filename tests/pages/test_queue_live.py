"""Leads racing each other over the real ASGI app (uvicorn, PostgreSQL):
many approve and reject POSTs at once on the same actions, each request in
its own server thread and database connection. Exactly one decision wins
per action and its status moves exactly once (dispatch, once built, hangs
off that single move)."""

from __future__ import annotations

import random
import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings
from django.test import Client

from approvals.models import Action, Decision, DecisionVerdict, Risk
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.factories import UserFactory
from tests.support.servers import CLIENT_KEEPALIVE_SECONDS

pytestmark = pytest.mark.django_db(transaction=True)

DECIDING_VERBS = ("action.approved", "action.rejected")


@pytest.fixture
def leads(lead, other_lead, department) -> list:
    extra = [UserFactory(username=f"lead-{n}") for n in range(2)]
    department.leads.add(*extra)
    return [lead, other_lead, *extra]


def browser_for(base_url: str, user) -> httpx.Client:
    """An HTTP client logged in as `user`, with a CSRF cookie and the matching
    header, as a page's htmx would send them."""
    session = Client()
    session.force_login(user)
    token = secrets.token_hex(16)  # 32 characters: a CSRF secret Django accepts as is
    return httpx.Client(
        base_url=base_url,
        cookies={
            settings.SESSION_COOKIE_NAME: session.cookies[settings.SESSION_COOKIE_NAME].value,
            settings.CSRF_COOKIE_NAME: token,
        },
        headers={"X-CSRFToken": token},
        timeout=30,
        limits=httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_SECONDS),
    )


def storm(base_url: str, users: list, requests: list[tuple[int, str, dict]]) -> list[int]:
    """Send (user index, path, form) requests all at once from a thread each; their status codes."""
    clients = [browser_for(base_url, user) for user in users]
    start = threading.Barrier(len(requests))

    def send(request: tuple[int, str, dict]) -> int:
        user_index, path, form = request
        start.wait()
        return clients[user_index].post(path, data=form).status_code

    try:
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            return list(pool.map(send, requests))
    finally:
        for client in clients:
            client.close()


def status_moves(action: Action) -> list[str]:
    return list(AuditEvent.objects.for_object(action).filter(verb__in=DECIDING_VERBS).values_list("verb", flat=True))


def test_it_lets_exactly_one_decision_win_when_leads_race(asgi_server, leads, propose):
    actions = [propose() for _ in range(4)]
    requests = [
        (user_index, f"/actions/{action.pk}/{verb}/", {"reason": "Racing."} if verb == "reject" else {})
        for action in actions
        for user_index in range(len(leads))
        for verb in ("approve", "reject")
    ]
    random.shuffle(requests)

    codes = storm(asgi_server.url, leads, requests)

    # Every request was answered (a refusal is a redirect with a message), none crashed.
    assert Counter(codes) == {302: len(requests)}
    for action in actions:
        action.refresh_from_db()
        decisions = list(Decision.objects.filter(action=action))
        assert len(decisions) == 1, f"{action.pk} has {len(decisions)} decisions"
        expected = Status.APPROVED if decisions[0].verdict == DecisionVerdict.APPROVE else Status.REJECTED
        assert action.status == expected and action.decided_at is not None
        assert status_moves(action) == [f"action.{expected}"]


def test_it_takes_two_different_leads_for_a_critical_action_however_many_race(asgi_server, leads, propose):
    critical = propose(risk=Risk.CRITICAL)
    requests = [(user_index, f"/actions/{critical.pk}/approve/", {}) for user_index in range(len(leads))] * 2

    codes = storm(asgi_server.url, leads, requests)

    assert Counter(codes) == {302: len(requests)}
    critical.refresh_from_db()
    approvals = Decision.objects.filter(action=critical, verdict=DecisionVerdict.APPROVE)
    assert critical.status == Status.APPROVED
    assert approvals.count() == 2 and approvals.values("user").distinct().count() == 2
    assert status_moves(critical) == ["action.approved"]
    assert AuditEvent.objects.for_object(critical).filter(verb="action.first_approval").count() == 1
