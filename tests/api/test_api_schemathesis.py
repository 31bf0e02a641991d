"""schemathesis against /api/schema/: requests written from the OpenAPI
document itself (valid and invalid bodies, parameters and headers), sent
in-process to the WSGI app with an agent key. No answer is a 5xx, and every
answer matches what the document says: a documented status code, its
content type, its headers and its body schema.

tests/api/test_api_fuzz.py (hypothesis, hand-written strategies) reaches deeper
into the proposal body; this one follows the document, so it also catches
the document drifting from the code."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks

from agents.models import Tier
from approvals.api.views import AgentRateThrottle
from approvals.models import PromotionPolicy
from config.wsgi import application
from tests.api.test_api_keys import new_key
from tests.api.test_api_proposals import granted, refund

pytestmark = pytest.mark.django_db

EXAMPLES = 40  # per operation; six operations


@pytest.fixture(autouse=True)
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Hundreds of requests from one agent: the throttle is not under test here.
    monkeypatch.setattr(AgentRateThrottle, "rate", "100000/min", raising=False)
    # As django.test.Client does: the start and end of a request must not
    # close the test's connection (and its transaction) under the test.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


PAYLOAD_400 = {"order": "A-1001", "amount": 400}


@pytest.fixture
def agent_key(agent) -> str:
    # Executor, within limits: a proposal may come back approved, pending or blocked.
    granted(agent, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal(100), max_amount_per_action=Decimal(1000))
    # Many "failed" results in a row would trip the circuit breaker and suspend the agent.
    PromotionPolicy.objects.update_or_create(department=None, defaults={"failure_limit": 1_000_000})
    return new_key(agent)


# Loaded once, at collection, from the app itself (the document needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
# Unknown query parameters are ignored, as most APIs do, not refused: don't
# send them as "schema-violating" requests that must fail.
schema.config.generation.update(allow_extra_parameters=False)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_the_schema_and_none_is_a_server_error(case, agent_key):
    # Every check but positive_data_acceptance ("a schema-valid request is
    # accepted"): action types and action ids are data, not schema, so a
    # valid-looking proposal of an unknown action type is rightly a 400.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {agent_key}"}, excluded_checks=[checks.positive_data_acceptance]
    )


def test_the_answers_about_real_actions_match_the_schema_too(agent_key):
    """Generated requests rarely name an action that exists; walk one real
    action through every call, validating each answer the same way."""
    auth = {"Authorization": f"Bearer {agent_key}"}

    def call(method: str, path: str, **parts) -> dict:
        case = schema[path][method].Case(**parts)
        return case.call_and_validate(headers=auth, excluded_checks=[checks.positive_data_acceptance])

    pending = call(
        "POST", "/api/v1/actions/", body=refund(amount="400.00", payload=PAYLOAD_400, idempotency_key="schema-1")
    )
    assert pending.status_code == 201 and pending.json()["status"] == "pending"
    action = {"id": pending.json()["id"]}
    assert (
        call(
            "POST", "/api/v1/actions/", body=refund(amount="400.00", payload=PAYLOAD_400, idempotency_key="schema-1")
        ).status_code
        == 200
    )
    assert call("POST", "/api/v1/actions/", body=refund(idempotency_key="schema-1")).status_code == 409
    mismatch = call("POST", "/api/v1/actions/", body=refund(amount="0.00", payload=PAYLOAD_400))
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == "amount_mismatch"
    assert call("GET", "/api/v1/actions/{id}/", path_parameters=action, query={"wait": 0}).status_code == 200
    listed = call("GET", "/api/v1/actions/", query={"status": "pending"})
    assert listed.json()["count"] == 1
    assert call("GET", "/api/v1/me/").status_code == 200
    assert (
        call("POST", "/api/v1/actions/{id}/result/", path_parameters=action, body={"outcome": "succeeded"}).status_code
        == 409
    )
    assert call("POST", "/api/v1/actions/{id}/cancel/", path_parameters=action).json()["status"] == "cancelled"
    assert call("POST", "/api/v1/actions/{id}/cancel/", path_parameters=action).status_code == 409
    approved = call("POST", "/api/v1/actions/", body=refund())
    assert approved.status_code == 201 and approved.json()["status"] == "approved"
    blocked = call("POST", "/api/v1/actions/", body=refund(amount=..., payload={"order": "A-1001", "amount": 900000}))
    assert blocked.status_code == 403
