"""Whatever an agent sends, the API answers without a server error, and every
refusal has the one error shape. Hypothesis writes the requests: arbitrary
JSON, the real fields with wrong types, odd query strings and headers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents.models import Tier
from approvals.api.views import AgentRateThrottle
from approvals.models import PromotionPolicy
from tests.api.test_api_keys import api_client, new_key, post_json
from tests.api.test_api_proposals import ACTIONS, granted

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "\x00", "\ud7ff", "🙂", "payments.refund", "succeeded", "failed", "1e400", "NaN"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
VALID = {
    "action_type": "payments.refund",
    "payload": {"order": "A-1001", "amount": 42.5},
    "reasoning": "Damaged parcel.",
    "confidence": 0.95,
    "amount": "42.50",
    "context": {"ticket": "T-77"},
}
# A valid proposal with one field changed, added or dropped: reaches 201 and 403 as well as 400.
mutations = st.builds(
    lambda valid, field, value, drop: {k: v for k, v in {**valid, field: value}.items() if k != drop},
    st.just(VALID),
    st.sampled_from([*VALID, "idempotency_key", "extra"]),
    json_values,
    st.sampled_from([None, *VALID]),
)
# Valid, with odd free-form parts that are stored as they come: reaches the database.
odd_but_valid = st.builds(
    lambda valid, context, reasoning, payload_order: {
        **valid,
        "context": context,
        "reasoning": reasoning,
        "payload": {"order": payload_order, "amount": 42.5},
    },
    st.just(VALID),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    st.text(min_size=1, max_size=40).filter(str.strip),
    st.text(max_size=20),
)
proposals = st.fixed_dictionaries(
    {},
    optional={
        "action_type": st.sampled_from(["payments.refund", "payments.nothing", ""]) | json_values,
        "payload": st.fixed_dictionaries({}, optional={"order": json_values, "amount": json_values}) | json_values,
        "reasoning": st.text(max_size=50) | json_values,
        "confidence": st.floats() | st.sampled_from([0, 1, 0.5, -0.0, 1.0000001]) | json_values,
        "amount": st.decimals(allow_nan=False, allow_infinity=False).map(str) | json_values,
        "context": st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values,
        "idempotency_key": st.text(max_size=300) | json_values,
        "extra": json_values,
    },
)
valid_results = st.fixed_dictionaries(
    {"outcome": st.sampled_from(["succeeded", "failed"])}, optional={"detail": json_values, "undo": json_values}
)
results = st.fixed_dictionaries(
    {},
    optional={
        "outcome": st.sampled_from(["succeeded", "failed", "SUCCEEDED", ""]) | json_values,
        "detail": json_values,
        "undo": json_values,
        "status": json_values,
    },
)


def as_bytes(body: Any) -> bytes:
    return json.dumps(body).encode() if not isinstance(body, bytes) else body


bodies = st.one_of(odd_but_valid, odd_but_valid, mutations, proposals, json_values, st.binary(max_size=40))


def assert_answered(response: Any) -> None:
    """No server error; a refusal in the one error shape."""
    event(f"HTTP {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 300:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        for name, messages in error.get("fields", {}).items():
            assert isinstance(name, str)
            assert messages and all(isinstance(message, str) for message in messages)


@pytest.fixture(autouse=True)
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hundreds of requests from one agent, across runs sharing the cache.
    monkeypatch.setattr(AgentRateThrottle, "rate", "100000/min", raising=False)


@pytest.fixture
def client(agent):
    granted(agent, tier=Tier.EXECUTOR)
    # Many fuzzed "failed" results in a row would trip the circuit breaker and suspend the agent.
    PromotionPolicy.objects.update_or_create(department=None, defaults={"failure_limit": 1_000_000})
    return api_client(agent)


@FUZZ
@given(body=bodies)
def test_it_answers_any_proposal_body_without_a_server_error(client, body):
    response = client.post(ACTIONS, as_bytes(body), content_type="application/json")
    assert_answered(response)
    if response.status_code in (200, 201):
        assert response.json()["action_type"] == "payments.refund"
        assert response.json()["status"] in ("approved", "pending")


@FUZZ
@given(body=st.one_of(valid_results, results, json_values, st.binary(max_size=40)))
def test_it_answers_any_result_body_without_a_server_error(client, body):
    # A fresh approved action each time: a valid result moves it on.
    proposal = {
        "action_type": "payments.refund",
        "payload": {"order": "A-1", "amount": 1},
        "reasoning": "Refund.",
        "confidence": 0.99,
    }
    action = post_json(client, ACTIONS, proposal).json()
    assert action["status"] == "approved"
    response = client.post(f"{ACTIONS}{action['id']}/result/", as_bytes(body), content_type="application/json")
    assert_answered(response)
    if response.status_code == 200:
        assert response.json()["status"] in ("succeeded", "failed")


query_values = st.text(max_size=20) | st.sampled_from(["pending", "approved", "1", "0", "-1", "last", "²", "9" * 5000])


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["status", "page", "wait", "ordering", "x"]), query_values, max_size=3))
def test_it_answers_any_list_query_without_a_server_error(client, params):
    assert_answered(client.get(ACTIONS, params))


@FUZZ
@given(wait=query_values | st.integers(min_value=-(10**20), max_value=10**20).map(str))
def test_it_answers_any_wait_without_a_server_error(client, wait):
    # A decided action: a valid wait answers at once, so the run stays fast.
    proposal = {"action_type": "payments.refund", "payload": {"order": "A-1", "amount": 1}, "reasoning": "R."}
    action = post_json(client, ACTIONS, {**proposal, "confidence": 0.99}).json()
    response = client.get(f"{ACTIONS}{action['id']}/", {"wait": wait})
    assert_answered(response)
    if response.status_code == 200:
        assert response.json()["id"] == action["id"]


# What a server hands Django: header bytes decoded as latin-1, no control characters.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)


@FUZZ
@given(
    header=header_text
    | header_text.map(lambda text: "Bearer " + text)
    | st.from_regex(r"\ABearer csk_[0-9a-f]{8}_[A-Za-z0-9_-]{0,50}\Z")
    | st.tuples(st.sampled_from(["Bearer ", "bearer ", "Bearer", "Token ", "Basic ", ""]), header_text).map(
        lambda parts: f"{parts[0]}csk_{parts[1]}"
    )
)
def test_it_answers_any_authorization_header_with_401(agent, header):
    new_key(agent)  # a key exists, so prefixes are looked up for real
    response = Client(headers={"Authorization": header}).get("/api/v1/me/")
    assert_answered(response)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
