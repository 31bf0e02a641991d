"""Reading and acting on one's own actions: detail, list, cancel, result, me,
and the per-agent throttle. Another agent's action is a 404, always."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.pagination import PageNumberPagination

from agents.models import Agent, Tier
from agents.services import suspend_agent
from approvals import services
from approvals.api.views import AgentRateThrottle
from approvals.models import Action, Executor, Risk
from audit.log import Actor
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client, assert_error, post_json
from tests.api.test_api_proposals import ACTIONS, granted, refund
from tests.support.factories import ActionTypeFactory, AgentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db

NOWHERE = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def client(agent):
    return api_client(agent)


@pytest.fixture
def stranger(department):
    """Another agent of the same department."""
    return AgentFactory(slug="refund-bot-2", owner=UserFactory(username="oscar-owner"), department=department)


def send(client: Any, method: str, path: str, body: Any = None) -> Any:
    return client.get(path) if method == "get" else post_json(client, path, body or {})


def propose(client: Any, **overrides: Any) -> dict[str, Any]:
    response = post_json(client, ACTIONS, refund(**overrides))
    assert response.status_code == 201, response.json()
    return response.json()


def approved(client: Any, lead: Any, **overrides: Any) -> dict[str, Any]:
    action = propose(client, **overrides)
    services.approve(action["id"], lead)
    return action


# ---------------------------------------------------------------- one action


def test_it_shows_an_agent_its_own_action(agent, client):
    granted(agent)
    action = propose(client)
    response = client.get(f"{ACTIONS}{action['id']}/")
    assert response.status_code == 200
    assert response.json() == action


def test_it_shows_the_decisions_on_an_action(agent, client, lead):
    granted(agent)
    action = approved(client, lead)
    body = client.get(f"{ACTIONS}{action['id']}/").json()
    assert body["status"] == "approved"
    assert body["decided_at"] is not None
    assert [(d["verdict"], d["comment"]) for d in body["decisions"]] == [("approve", "")]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("get", "", None), ("post", "cancel/", None), ("post", "result/", {"outcome": "succeeded"})],
)
def test_it_hides_another_agents_action_behind_404(agent, stranger, lead, method, suffix, body):
    granted(agent)
    granted(stranger)
    theirs = approved(api_client(stranger), lead)
    response = send(api_client(agent), method, f"{ACTIONS}{theirs['id']}/{suffix}", body)
    assert_error(response, 404, "not_found")
    assert Action.objects.get(pk=theirs["id"]).status == "approved"
    assert not Action.objects.get(pk=theirs["id"]).executions.exists()


@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("post", "cancel/"), ("post", "result/")])
def test_it_answers_404_for_an_action_that_does_not_exist(client, method, suffix):
    response = send(client, method, f"{ACTIONS}{NOWHERE}/{suffix}", {"outcome": "failed"})
    assert_error(response, 404, "not_found")


# ---------------------------------------------------------------- the list


def test_it_lists_only_the_agents_own_actions_newest_first(agent, client, stranger):
    granted(agent)
    granted(stranger)
    mine = [propose(client, reasoning=f"Refund {n}.")["id"] for n in range(3)]
    propose(api_client(stranger))
    body = client.get(ACTIONS).json()
    assert body["count"] == 3
    assert [action["id"] for action in body["results"]] == mine[::-1]


def test_it_pages_the_list(agent, client, monkeypatch):
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    granted(agent)
    ids = [propose(client, reasoning=f"Refund {n}.")["id"] for n in range(5)][::-1]

    first = client.get(ACTIONS).json()
    assert (first["count"], first["previous"]) == (5, None)
    assert first["next"] == "http://testserver/api/v1/actions/?page=2"
    assert [a["id"] for a in first["results"]] == ids[:2]

    last = client.get(ACTIONS, {"page": 3}).json()
    assert (last["count"], last["next"]) == (5, None)
    assert last["previous"] == "http://testserver/api/v1/actions/?page=2"
    assert [a["id"] for a in last["results"]] == ids[4:]


def test_it_keeps_the_status_filter_across_pages(agent, client, monkeypatch):
    monkeypatch.setattr(PageNumberPagination, "page_size", 1)
    granted(agent)
    for n in range(2):
        propose(client, reasoning=f"Refund {n}.")
    body = client.get(ACTIONS, {"status": "pending"}).json()
    assert body["next"] == "http://testserver/api/v1/actions/?page=2&status=pending"


@pytest.mark.parametrize("page", ["4", "0", "two"])
def test_it_answers_404_for_a_page_out_of_range(agent, client, page):
    granted(agent)
    propose(client)
    assert_error(client.get(ACTIONS, {"page": page}), 404, "not_found")


def test_it_filters_the_list_by_status(agent, client, lead):
    granted(agent)
    pending = propose(client, reasoning="Waits.")["id"]
    cancelled = propose(client, reasoning="Cancelled.")["id"]
    client.post(f"{ACTIONS}{cancelled}/cancel/")
    decided = approved(client, lead, reasoning="Approved.")["id"]

    def listed(status: str) -> list[str]:
        return [a["id"] for a in client.get(ACTIONS, {"status": status}).json()["results"]]

    assert listed("pending") == [pending]
    assert listed("cancelled") == [cancelled]
    assert listed("approved") == [decided]
    assert listed("rejected") == []
    assert client.get(ACTIONS, {"status": ""}).json()["count"] == 3


@pytest.mark.parametrize("status", ["waiting", "PENDING", "pending,approved"])
def test_it_refuses_an_unknown_status_filter(client, status):
    error = assert_error(client.get(ACTIONS, {"status": status}), 400, "invalid")
    assert set(error["fields"]) == {"status"}


# ---------------------------------------------------------------- cancel


def test_it_cancels_a_pending_action_once(agent, client):
    granted(agent)
    action = propose(client)
    response = client.post(f"{ACTIONS}{action['id']}/cancel/")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (action["id"], "cancelled")
    event = AuditEvent.objects.get(verb="action.cancelled")
    assert (event.object_id, event.actor_kind, event.actor_label) == (action["id"], "agent", "refund-bot")

    again = client.post(f"{ACTIONS}{action['id']}/cancel/")
    assert "cancelled" in assert_error(again, 409, "not_pending")["message"]
    assert AuditEvent.objects.filter(verb="action.cancelled").count() == 1


@pytest.mark.parametrize(
    ("tier", "decide", "status"),
    [
        (Tier.EXECUTOR, None, "approved"),
        (Tier.OBSERVER, None, "shadowed"),
        (Tier.CONTRIBUTOR, "approve", "approved"),
        (Tier.CONTRIBUTOR, "reject", "rejected"),
    ],
)
def test_it_refuses_to_cancel_an_action_that_is_not_pending(agent, client, lead, tier, decide, status):
    granted(agent, tier=tier)
    action = propose(client)
    if decide == "approve":
        services.approve(action["id"], lead)
    elif decide == "reject":
        services.reject(action["id"], lead, reason="Not this one.")
    assert_error(client.post(f"{ACTIONS}{action['id']}/cancel/"), 409, "not_pending")
    assert Action.objects.get(pk=action["id"]).status == status


def test_it_refuses_to_cancel_a_blocked_action(agent, client):
    granted(agent)
    suspend_agent(agent, actor=Actor.system("tests"), reason="Investigating.")
    blocked = assert_error(post_json(client, ACTIONS, refund()), 403, "agent_suspended")
    assert_error(client.post(f"{ACTIONS}{blocked['action_id']}/cancel/"), 409, "not_pending")


# ---------------------------------------------------------------- result


@pytest.mark.parametrize(
    ("report", "status", "outcome", "error"),
    [
        (
            {"outcome": "succeeded", "detail": {"refund_id": "re_1"}, "undo": {"refund_id": "re_1"}},
            "succeeded",
            "succeeded",
            "",
        ),
        ({"outcome": "succeeded"}, "succeeded", "succeeded", ""),
        ({"outcome": "failed", "detail": "card network down"}, "failed", "failed", "card network down"),
    ],
)
def test_it_records_the_result_of_an_agent_executed_action(agent, client, lead, report, status, outcome, error):
    granted(agent)
    action = approved(client, lead)
    response = post_json(client, f"{ACTIONS}{action['id']}/result/", report)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == status
    assert [(e["kind"], e["attempt"], e["outcome"], e["error"]) for e in body["executions"]] == [
        ("dispatch", 1, outcome, error)
    ]
    execution = Action.objects.get(pk=action["id"]).executions.get()
    assert (execution.response, execution.undo) == (report.get("detail"), report.get("undo"))
    event = AuditEvent.objects.get(verb="action.result_reported")
    assert (event.after["status"], event.actor_label) == (status, "refund-bot")


def test_it_takes_the_result_of_an_action_approved_by_policy(agent, client):
    granted(agent, tier=Tier.EXECUTOR)
    action = propose(client)
    assert action["status"] == "approved"
    response = post_json(client, f"{ACTIONS}{action['id']}/result/", {"outcome": "succeeded"})
    assert response.json()["status"] == "succeeded"


def test_it_takes_one_result_only(agent, client, lead):
    granted(agent)
    action = approved(client, lead)
    assert post_json(client, f"{ACTIONS}{action['id']}/result/", {"outcome": "succeeded"}).status_code == 200
    again = post_json(client, f"{ACTIONS}{action['id']}/result/", {"outcome": "failed"})
    assert_error(again, 409, "invalid_state")
    assert Action.objects.get(pk=action["id"]).status == "succeeded"
    assert Action.objects.get(pk=action["id"]).executions.count() == 1


@pytest.mark.parametrize("decide", [None, "reject"])
def test_it_refuses_a_result_for_an_action_not_approved(agent, client, lead, decide):
    granted(agent)
    action = propose(client)
    if decide:
        services.reject(action["id"], lead, reason="No.")
    response = post_json(client, f"{ACTIONS}{action['id']}/result/", {"outcome": "succeeded"})
    assert_error(response, 409, "invalid_state")
    assert not Action.objects.get(pk=action["id"]).executions.exists()


def test_it_refuses_a_result_for_an_action_the_gateway_carries_out(agent, client, lead):
    webhook = ActionTypeFactory(
        slug="crm.update_lead_owner",
        executor=Executor.WEBHOOK,
        webhook_url="https://crm.example.com/hooks/countersign",
        payload_schema={},
    )
    GrantFactory(agent=agent, action_type=webhook, tier=Tier.CONTRIBUTOR)
    action = propose(client, action_type="crm.update_lead_owner", payload={"lead": 7}, amount=...)
    services.approve(action["id"], lead)

    response = post_json(client, f"{ACTIONS}{action['id']}/result/", {"outcome": "succeeded"})
    assert_error(response, 409, "not_agent_executed")
    assert Action.objects.get(pk=action["id"]).status == "approved"
    assert not Action.objects.get(pk=action["id"]).executions.exists()


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({}, "outcome"),
        ({"outcome": "done"}, "outcome"),
        ({"outcome": "SUCCEEDED"}, "outcome"),
        ({"outcome": None}, "outcome"),
        ({"outcome": ["succeeded"]}, "outcome"),
        ({"outcome": "succeeded", "status": "succeeded"}, "status"),
        ({"outcome": "succeeded", "rollback": True}, "rollback"),
        ({"outcome": "failed", "detail": "bad\u0000byte"}, "detail"),
    ],
)
def test_it_refuses_a_malformed_result(agent, client, lead, report, field):
    granted(agent)
    action = approved(client, lead)
    error = assert_error(post_json(client, f"{ACTIONS}{action['id']}/result/", report), 400, "invalid")
    assert field in error["fields"], error
    assert Action.objects.get(pk=action["id"]).status == "approved"


@pytest.mark.parametrize(("raw", "code"), [(b'["succeeded"]', "invalid"), (b'{"outcome": ', "malformed_json")])
def test_it_refuses_a_result_that_is_not_a_json_object(agent, client, lead, raw, code):
    granted(agent)
    action = approved(client, lead)
    assert_error(client.post(f"{ACTIONS}{action['id']}/result/", raw, "application/json"), 400, code)
    assert Action.objects.get(pk=action["id"]).status == "approved"


# ---------------------------------------------------------------- me


def test_it_tells_the_agent_who_it_is_with_grants_limits_and_approval_rates(agent, client, lead, other_lead):
    refunds = granted(
        agent,
        max_amount_per_action=Decimal("500.00"),
        max_actions_per_day=40,
        max_amount_per_day=Decimal("2000.00"),
        auto_approve_max_amount=Decimal("50.00"),
    )
    emails = ActionTypeFactory(slug="email.send_external", risk=Risk.HIGH)
    GrantFactory(agent=agent, action_type=emails, tier=Tier.OBSERVER)
    actions = [propose(client, reasoning=f"Refund {n}.")["id"] for n in range(4)]
    services.approve(actions[0], lead)
    services.approve(actions[1], other_lead, edited_payload={"order": "A-1001", "amount": 40})
    services.reject(actions[2], lead, reason="Duplicate.")
    # actions[3] stays pending: not a decision

    response = client.get("/api/v1/me/")
    assert response.status_code == 200
    me = response.json()
    assert {k: me[k] for k in ("slug", "status", "department", "version")} == {
        "slug": "refund-bot",
        "status": "active",
        "department": "Finance",
        "version": "1.0",
    }
    assert me["grants"] == [
        {
            "action_type": "email.send_external",
            "risk": "high",
            "tier": "observer",
            "max_amount_per_action": None,
            "max_actions_per_day": None,
            "max_amount_per_day": None,
            "auto_approve_max_amount": None,
            "min_confidence": 0.8,
            "approval_rate": {"window_days": 7, "decisions": 0, "approved": 0, "rate": None},
        },
        {
            "action_type": refunds.slug,
            "risk": "low",
            "tier": "contributor",
            "max_amount_per_action": "500.00",
            "max_actions_per_day": 40,
            "max_amount_per_day": "2000.00",
            "auto_approve_max_amount": "50.00",
            "min_confidence": 0.8,
            "approval_rate": {"window_days": 7, "decisions": 3, "approved": 2, "rate": pytest.approx(2 / 3)},
        },
    ]


def test_it_shows_a_suspended_agent_its_status(agent, client):
    suspend_agent(agent, actor=Actor.system("tests"), reason="Investigating.")
    body = client.get("/api/v1/me/").json()
    assert (body["status"], body["grants"]) == ("suspended", [])


def test_it_counts_only_the_agents_own_decisions(agent, client, stranger, lead):
    granted(agent)
    granted(stranger)
    services.reject(propose(api_client(stranger))["id"], lead, reason="No.")
    services.approve(propose(client)["id"], lead)
    rate = client.get("/api/v1/me/").json()["grants"][0]["approval_rate"]
    assert (rate["decisions"], rate["approved"], rate["rate"]) == (1, 1, 1.0)


# ---------------------------------------------------------------- throttle


# The throttle's clock pinned 20 s into a minute: every request of a test
# falls in one window however long it takes, and whenever it starts.
PINNED_CLOCK = 1_800_000_000.0 + 20  # a multiple of 60, plus 20 s
PINNED_WINDOW = int(PINNED_CLOCK // 60)


@pytest.fixture
def three_a_minute(agent: Agent, stranger: Agent, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(AgentRateThrottle, "rate", "3/min", raising=False)
    monkeypatch.setattr(AgentRateThrottle, "now", staticmethod(lambda: PINNED_CLOCK))
    # The counts live in the shared cache, keyed by agent and window: start clean.
    keys = [
        AgentRateThrottle.cache_key(someone.pk, PINNED_WINDOW + offset)
        for someone in (agent, stranger)
        for offset in (-1, 0, 1, 2)
    ]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def test_it_throttles_an_agent_past_its_rate_with_429_and_retry_after(agent, client, three_a_minute):
    for _ in range(3):
        assert client.get("/api/v1/me/").status_code == 200
    response = client.get(ACTIONS)
    assert_error(response, 429, "throttled")
    # 40 s left of this window, then 30 s of the next until half of the 4 counted have faded.
    assert response["Retry-After"] == "70"
    assert_error(post_json(client, ACTIONS, refund()), 429, "throttled")
    assert not Action.objects.exists()


def test_it_throttles_each_agent_on_its_own(agent, client, stranger, three_a_minute):
    for _ in range(3):
        client.get("/api/v1/me/")
    assert_error(client.get("/api/v1/me/"), 429, "throttled")
    assert api_client(stranger).get("/api/v1/me/").status_code == 200


def test_a_period_later_the_count_has_faded(agent, client, three_a_minute, monkeypatch):
    for _ in range(3):
        client.get("/api/v1/me/")
    assert_error(client.get("/api/v1/me/"), 429, "throttled")
    # The next window still weighs this one (the sliding window); the one after does not.
    monkeypatch.setattr(AgentRateThrottle, "now", staticmethod(lambda: PINNED_CLOCK + 60))
    assert_error(client.get("/api/v1/me/"), 429, "throttled")
    monkeypatch.setattr(AgentRateThrottle, "now", staticmethod(lambda: PINNED_CLOCK + 120))
    assert client.get("/api/v1/me/").status_code == 200


@pytest.mark.django_db(transaction=True)  # the wait hands its connection back: no test transaction around it
def test_a_waited_read_counts_once_against_the_throttle(agent, client, three_a_minute):
    grant = GrantFactory(agent=agent, action_type=ActionTypeFactory(), tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(agent, grant.action_type, payload={}, reasoning="Asked for.")

    assert client.get(f"{ACTIONS}{action.pk}/", {"wait": 1}).json()["status"] == "pending"  # answered twice
    assert client.get("/api/v1/me/").status_code == 200
    assert client.get("/api/v1/me/").status_code == 200
    assert_error(client.get("/api/v1/me/"), 429, "throttled")


# ---------------------------------------------------------------- paths no view matches


@pytest.mark.parametrize("path", [f"{ACTIONS}not-a-uuid/", "/api/v1/nothing-here/", "/api/v2/actions/"])
def test_it_answers_an_unknown_api_path_in_the_error_shape(client, path):
    assert_error(client.get(path), 404, "not_found")


def test_it_keeps_the_html_404_for_pages(lead):
    browser = Client()
    browser.force_login(lead)
    response = browser.get("/no-such-page/")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


def test_it_answers_a_crash_in_the_error_shape(client, monkeypatch):
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("approvals.api.views.MeView.get", crash)
    client.raise_request_exception = False
    error = assert_error(client.get("/api/v1/me/"), 500, "server_error")
    assert "a bug" not in error["message"]
