"""POST /api/v1/actions/: the policy's verdict in a full representation (201),
a refusal stored and audited (403), field errors that store nothing (400),
bodies too large (413) or not JSON (415), all in the one error shape."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from agents.models import Agent, Tier
from agents.services import suspend_agent
from approvals.models import Action, ActionType, GatewayState, Risk
from audit.log import Actor
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client, assert_error, new_key, post_json
from tests.support.factories import ActionTypeFactory, GrantFactory

pytestmark = pytest.mark.django_db

ACTIONS = "/api/v1/actions/"
REFUND_SCHEMA = {
    "type": "object",
    "properties": {
        "order": {"type": "string"},
        "amount": {"type": "number", "minimum": 0},
    },
    "required": ["order", "amount"],
    "additionalProperties": False,
}
CONTRACT_FIELDS = {
    "id",
    "action_type",
    "status",
    "payload",
    "reasoning",
    "confidence",
    "amount",
    "context",
    "policy",
    "decisions",
    "executions",
    "created_at",
    "decided_at",
    "url",
}
LIMIT = 256 * 1024


def granted(agent: Agent, tier: str = Tier.CONTRIBUTOR, risk: str = Risk.LOW, **grant: Any) -> ActionType:
    """payments.refund with the refund schema, granted to `agent`."""
    action_type = ActionTypeFactory(
        slug="payments.refund", risk=risk, payload_schema=REFUND_SCHEMA, amount_path="amount"
    )
    GrantFactory(agent=agent, action_type=action_type, tier=tier, **grant)
    return action_type


def refund(**overrides: Any) -> dict[str, Any]:
    """A valid proposal body for payments.refund; an override of `...` leaves the field out."""
    body: dict[str, Any] = {
        "action_type": "payments.refund",
        "payload": {"order": "A-1001", "amount": 42.5},
        "reasoning": "The parcel arrived damaged; the customer sent photos.",
        "confidence": 0.93,
        "amount": "42.50",
        "context": {"ticket": "T-77", "agent_version": "1.4.2", "tokens_used": 1830},
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not ...}


def nothing_stored() -> bool:
    return not Action.objects.exists() and not AuditEvent.objects.filter(verb="action.proposed").exists()


# ---------------------------------------------------------------- 201


@pytest.mark.parametrize(
    ("tier", "risk", "status", "code"),
    [
        (Tier.CONTRIBUTOR, Risk.LOW, "pending", "contributor"),
        (Tier.EXECUTOR, Risk.LOW, "approved", "executor"),
        (Tier.EXECUTOR, Risk.HIGH, "pending", "permanent_gate"),
        (Tier.OBSERVER, Risk.LOW, "shadowed", "observer"),
    ],
)
def test_it_answers_201_with_the_full_representation(agent, tier, risk, status, code):
    granted(agent, tier=tier, risk=risk)
    response = post_json(api_client(agent), ACTIONS, refund())

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) >= CONTRACT_FIELDS
    action = Action.objects.get()
    assert body["id"] == str(action.pk)
    assert (body["action_type"], body["status"], action.status) == ("payments.refund", status, status)
    assert body["payload"] == {"order": "A-1001", "amount": 42.5}
    assert body["reasoning"] == "The parcel arrived damaged; the customer sent photos."
    assert (body["confidence"], body["amount"]) == (0.93, "42.50")
    assert body["context"] == {"ticket": "T-77", "agent_version": "1.4.2", "tokens_used": 1830}
    assert body["policy"] == {"verdict": status, "code": code, "reason": action.verdict_reason}
    assert body["policy"]["reason"]
    assert (body["decisions"], body["executions"]) == ([], [])
    assert body["created_at"]
    assert (body["decided_at"] is not None) == (status == "approved")
    assert body["url"] == f"http://testserver/api/v1/actions/{action.pk}/"
    assert action.amount == Decimal("42.50") and action.confidence == Decimal("0.930")


def test_it_audits_a_new_proposal_with_its_verdict(agent):
    granted(agent)
    raw = new_key(agent)
    assert post_json(api_client(raw_key=raw), ACTIONS, refund()).status_code == 201
    event = AuditEvent.objects.for_object(Action.objects.get()).get(verb="action.proposed")
    assert event.after["status"] == "pending"
    assert (event.after["code"], event.after["amount"]) == ("contributor", "42.50")
    assert event.context["key_prefix"] == raw[:12]


@pytest.mark.parametrize(
    "optional", [{"confidence": ...}, {"amount": ...}, {"context": ...}, {"confidence": None, "amount": None}]
)
def test_it_leaves_the_optional_fields_optional(agent, optional):
    granted(agent)
    response = post_json(api_client(agent), ACTIONS, refund(**optional))
    assert response.status_code == 201, response.json()
    body = response.json()
    for name in optional:
        # The amount is read from the payload whether or not the agent declares it.
        assert body[name] == {"context": {}, "amount": "42.50"}.get(name)


# ---------------------------------------------------------------- 403


def _not_granted(agent: Agent) -> None:
    ActionTypeFactory(slug="payments.refund", payload_schema=REFUND_SCHEMA, amount_path="amount")


def _suspended(agent: Agent) -> None:
    granted(agent)
    suspend_agent(agent, actor=Actor.system("tests"), reason="Refunds look wrong")


def _paused(agent: Agent) -> None:
    granted(agent, tier=Tier.EXECUTOR)
    GatewayState.objects.update_or_create(id=1, defaults={"paused": True, "reason": "Incident 42"})


def _over_limit(agent: Agent) -> None:
    granted(agent, tier=Tier.EXECUTOR, max_amount_per_action=Decimal("40.00"))


def _over_daily_count(agent: Agent) -> None:
    granted(agent, max_actions_per_day=0)


@pytest.mark.parametrize(
    ("arrange", "code", "reason"),
    [
        (_not_granted, "not_granted", "no grant"),
        (_suspended, "agent_suspended", "suspended"),
        (_paused, "gateway_paused", "paused"),
        (_over_limit, "limit_exceeded", "42.50 is over this grant's limit of 40.00"),
        (_over_daily_count, "limit_exceeded", "limit of 0 a day"),
    ],
)
def test_it_refuses_a_blocked_proposal_with_403_and_stores_it(agent, arrange, code, reason):
    arrange(agent)
    raw = new_key(agent)
    response = post_json(api_client(raw_key=raw), ACTIONS, refund())

    error = assert_error(response, 403, code)
    assert reason in error["message"]
    action = Action.objects.get()
    assert (action.status, action.verdict, action.verdict_code) == ("blocked", "blocked", code)
    assert error["action_id"] == str(action.pk)
    assert response.json()["action"]["status"] == "blocked"
    assert response.json()["action"]["policy"] == {"verdict": "blocked", "code": code, "reason": error["message"]}
    event = AuditEvent.objects.for_object(action).get(verb="action.proposed")
    assert (event.after["status"], event.after["code"]) == ("blocked", code)
    assert event.context["key_prefix"] == raw[:12]


def test_it_stores_a_blocked_proposal_whatever_its_payload(agent):
    _not_granted(agent)
    response = post_json(api_client(agent), ACTIONS, refund(payload={"order": 17}))
    assert_error(response, 403, "not_granted")
    assert Action.objects.get().payload == {"order": 17}


# ---------------------------------------------------------------- 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (refund(action_type="payments.nothing"), "action_type"),
        (refund(action_type=...), "action_type"),
        (refund(action_type=""), "action_type"),
        (refund(action_type=["payments.refund"]), "action_type"),
        (refund(payload={"order": "A-1001", "amount": "ten"}), "payload.amount"),
        (refund(payload={"order": "A-1001", "amount": -1}), "payload.amount"),
        (refund(payload={"order": "A-1001"}), "payload"),
        (refund(payload={"order": "A-1001", "amount": 42.5, "iban": "DE00"}), "payload"),
        (refund(payload=...), "payload"),
        (refund(payload="order A-1001"), "payload"),
        (refund(payload=["A-1001", 42.5]), "payload"),
        (refund(payload=None), "payload"),
        (refund(reasoning=...), "reasoning"),
        (refund(reasoning=""), "reasoning"),
        (refund(reasoning="   "), "reasoning"),
        (refund(reasoning=None), "reasoning"),
        (refund(reasoning="x" * 20_001), "reasoning"),
        (refund(confidence=1.01), "confidence"),
        (refund(confidence=-0.01), "confidence"),
        (refund(confidence="very"), "confidence"),
        (refund(confidence=[0.9]), "confidence"),
        (refund(confidence={"value": 0.9}), "confidence"),
        (refund(amount="-0.01"), "amount"),
        (refund(amount=-5), "amount"),
        (refund(amount="42.505"), "amount"),
        (refund(amount="lots"), "amount"),
        (refund(amount="1000000000000.00"), "amount"),
        (refund(context="ticket T-77"), "context"),
        (refund(context=["T-77"]), "context"),
        (refund(context=7), "context"),
        (refund(idempotency_key=""), "idempotency_key"),
        (refund(idempotency_key="k" * 256), "idempotency_key"),
        (refund(approved=True), "approved"),
        (refund(status="approved"), "status"),
    ],
)
def test_it_refuses_a_field_error_with_400_and_stores_nothing(agent, body, field):
    granted(agent)
    response = post_json(api_client(agent), ACTIONS, body)
    error = assert_error(response, 400, "invalid")
    assert field in error["fields"], error
    assert nothing_stored()


def test_it_names_every_unknown_top_level_field(agent):
    granted(agent)
    error = assert_error(post_json(api_client(agent), ACTIONS, refund(priority=9, extra=1)), 400, "invalid")
    assert error["fields"] == {"extra": ["Unknown field."], "priority": ["Unknown field."]}


def test_it_gives_the_schema_path_of_each_payload_error(agent):
    granted(agent)
    response = post_json(api_client(agent), ACTIONS, refund(payload={"order": 1001, "amount": "ten"}))
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"payload.order", "payload.amount"}
    assert "'ten' is not of type 'number'" in error["fields"]["payload.amount"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'[{"action_type": "payments.refund"}]', "invalid"),
        (b'"payments.refund"', "invalid"),
        (b"null", "invalid"),
        (b"42", "invalid"),
        (b'{"action_type": "payments.refund",', "malformed_json"),
        (b"{'action_type': 'payments.refund'}", "malformed_json"),
        (b'{"amount": NaN}', "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (b"", "invalid"),
    ],
)
def test_it_refuses_a_body_that_is_not_a_json_object(agent, raw, code):
    granted(agent)
    response = api_client(agent).post(ACTIONS, raw, content_type="application/json")
    assert_error(response, 400, code)
    assert nothing_stored()


def test_it_refuses_json_nested_too_deep_for_the_parser(agent):
    granted(agent)
    deep = b'{"action_type": "payments.refund", "payload": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = api_client(agent).post(ACTIONS, deep, content_type="application/json")
    assert_error(response, 400, "malformed_json")
    assert nothing_stored()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (refund(payload={"order": "A-\u00001001", "amount": 1}), "payload.order"),
        (refund(payload={"order": "A-1001", "amount": 1}, context={"ticket\u0000": "T-77"}), "context"),
        (refund(context={"notes": ["ok", "bad\u0000"]}), "context.notes.1"),
        (refund(action_type="payments.\u0000refund"), "action_type"),
        (refund(reasoning="Because\u0000"), "reasoning"),
    ],
)
def test_it_refuses_nul_characters_the_database_cannot_store(agent, body, field):
    granted(agent)
    error = assert_error(post_json(api_client(agent), ACTIONS, body), 400, "invalid")
    assert any(name.startswith(field) for name in error["fields"]), error
    assert nothing_stored()


def test_it_refuses_unpaired_surrogates_the_database_cannot_store(agent):
    granted(agent)
    raw = json.dumps(refund(context={"note": "\ud800"})).encode()  # json.dumps escapes it as \ud800
    response = api_client(agent).post(ACTIONS, raw, content_type="application/json")
    error = assert_error(response, 400, "invalid")
    assert "context.note" in error["fields"]
    assert nothing_stored()


def test_it_keeps_text_that_only_looks_like_an_escaped_nul_or_surrogate(agent):
    granted(agent)
    text = "C:\\u0000 and \\ud800 are written out, not escapes; 🙂 is a pair"
    response = post_json(api_client(agent), ACTIONS, refund(reasoning=text, context={text: text}))
    assert response.status_code == 201, response.json()
    assert Action.objects.get().context == {text: text}


def test_it_keeps_unicode_that_the_database_can_store(agent):
    granted(agent)
    text = "Rückerstattung für Zoë 🙂 — 退款"
    body = refund(reasoning=text, context={"note": text, text: [text]})
    response = post_json(api_client(agent), ACTIONS, body)
    assert response.status_code == 201, response.json()
    assert Action.objects.get().context == {"note": text, text: [text]}


# ---------------------------------------------------------------- 413 and 415


def test_it_refuses_a_body_over_256_kib_with_413(agent):
    granted(agent)
    body = json.dumps(refund(reasoning="x" * LIMIT))
    assert len(body) > LIMIT
    response = api_client(agent).post(ACTIONS, body, content_type="application/json")
    assert_error(response, 413, "payload_too_large")
    assert nothing_stored()


def test_it_takes_a_body_just_under_the_limit(agent):
    granted(agent)
    padding = LIMIT - len(json.dumps(refund(context={"pad": ""})))
    body = json.dumps(refund(context={"pad": "x" * padding}))
    assert len(body) == LIMIT
    response = api_client(agent).post(ACTIONS, body, content_type="application/json")
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json"]
)
def test_it_refuses_a_body_that_is_not_json_with_415(agent, content_type):
    granted(agent)
    response = api_client(agent).post(ACTIONS, json.dumps(refund()), content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")
    assert nothing_stored()


def test_it_answers_405_in_the_error_shape(agent):
    assert_error(api_client(agent).put(ACTIONS, "{}", content_type="application/json"), 405, "method_not_allowed")


# ---------------------------------------------------------------- without a Content-Length (real server)


def _chunks(data: bytes, size: int = 16 * 1024):
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("reasoning", "status", "code"),
    [("x" * (LIMIT + 1), 413, "payload_too_large"), ("A chunked proposal.", 201, None)],
)
def test_it_reads_a_chunked_body_sent_without_a_content_length(asgi_server, agent, reasoning, status, code):
    granted(agent)
    raw = new_key(agent)
    data = json.dumps(refund(reasoning=reasoning)).encode()
    with httpx.Client(base_url=asgi_server.url, timeout=10) as client:
        request = client.build_request(
            "POST",
            ACTIONS,
            content=_chunks(data),
            headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = client.send(request)
    assert response.status_code == status, response.text[:300]
    if code:
        assert response.json()["error"]["code"] == code
        assert not Action.objects.exists()
    else:
        assert response.json()["reasoning"] == reasoning
        assert Action.objects.get().reasoning == reasoning
