"""Agent keys on the API: `Authorization: Bearer csk_…`, stored as prefix and
hash, every kind of bad key the same 401, use recorded at most once a minute,
the key's prefix in the audit trail of what it did.

Also home of the helpers the other test_api_* files share."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent, AgentKey
from agents.services import issue_key, revoke_key
from approvals.models import Action
from audit.log import Actor
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, GrantFactory

pytestmark = pytest.mark.django_db

KEY_SHAPE = re.compile(r"csk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")


# ---------------------------------------------------------------- shared helpers


def new_key(agent: Agent, **options: Any) -> str:
    """A fresh raw key of `agent`, issued the way the admin and the command do."""
    _key, raw = issue_key(agent, actor=Actor.system("tests"), **options)
    return raw


def api_client(agent: Agent | None = None, *, raw_key: str | None = None) -> Client:
    """A test client that sends the agent's key on every request."""
    raw_key = raw_key or (new_key(agent) if agent is not None else None)
    headers = {"Authorization": f"Bearer {raw_key}"} if raw_key else {}
    return Client(headers=headers)


def post_json(client: Client, path: str, body: Any, **extra: Any) -> Any:
    return client.post(path, body, content_type="application/json", **extra)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is `status` with the one error shape and `code`; returns error."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"].strip()
    if "fields" in error:
        assert error["fields"] and all(
            isinstance(name, str) and messages and all(isinstance(m, str) and m for m in messages)
            for name, messages in error["fields"].items()
        ), error["fields"]
    return error


# ---------------------------------------------------------------- format and storage


def test_it_issues_keys_of_a_prefix_and_32_random_bytes(agent):
    raw = new_key(agent)
    match = KEY_SHAPE.fullmatch(raw)
    assert match, raw
    assert len(base64.urlsafe_b64decode(match.group(2) + "=")) == 32
    assert raw != new_key(agent)


def test_it_stores_only_the_prefix_and_the_sha256_of_the_key(agent):
    raw = new_key(agent, label="production")
    key = AgentKey.objects.get()
    assert key.prefix == raw[:12] == f"csk_{KEY_SHAPE.fullmatch(raw).group(1)}"
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    stored = AgentKey.objects.filter(pk=key.pk).values().get()
    secret = raw[13:]
    assert not any(secret in str(value) for value in stored.values()), stored


def test_it_authenticates_the_agent_behind_a_bearer_key(agent):
    response = api_client(agent).get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["slug"] == "refund-bot"


def test_it_accepts_the_bearer_keyword_in_any_case(agent):
    raw = new_key(agent)
    response = Client(headers={"Authorization": f"bearer {raw}"}).get("/api/v1/me/")
    assert response.status_code == 200


# ---------------------------------------------------------------- refusals


def _header(agent: Agent, kind: str) -> str | None:
    """An Authorization header of the kind named, for `agent`."""
    raw = new_key(agent)
    prefix, secret = raw[:12], raw[13:]
    if kind == "expired":
        return "Bearer " + new_key(agent, expires_at=timezone.now() - timedelta(seconds=1))
    if kind == "revoked":
        revoked = new_key(agent)
        revoke_key(AgentKey.objects.get(prefix=revoked[:12]), actor=Actor.system("tests"))
        return "Bearer " + revoked
    return {
        "missing": None,
        "unknown prefix": f"Bearer csk_00000000_{secret}",
        "right prefix, wrong secret": f"Bearer {prefix}_{secret[::-1]}",
        "secret cut short": f"Bearer {raw[:-1]}",
        "prefix only": f"Bearer {prefix}",
        "not a csk key": "Bearer hello",
        "another scheme": f"Token {raw}",
        "basic auth": "Basic cmVmdW5kLWJvdDpzZWNyZXQ=",
        "bearer without a key": "Bearer ",
        "bare key, no scheme": raw,
    }[kind]


BAD_KEYS = [
    "missing",
    "unknown prefix",
    "right prefix, wrong secret",
    "secret cut short",
    "prefix only",
    "not a csk key",
    "another scheme",
    "basic auth",
    "bearer without a key",
    "bare key, no scheme",
    "expired",
    "revoked",
]

ENDPOINTS = [
    ("get", "/api/v1/me/"),
    ("get", "/api/v1/actions/"),
    ("post", "/api/v1/actions/"),
    ("get", "/api/v1/actions/00000000-0000-0000-0000-000000000000/"),
    ("post", "/api/v1/actions/00000000-0000-0000-0000-000000000000/cancel/"),
    ("post", "/api/v1/actions/00000000-0000-0000-0000-000000000000/result/"),
]


@pytest.mark.parametrize("kind", BAD_KEYS)
def test_it_refuses_a_bad_key_with_401_and_a_challenge(agent, kind):
    header = _header(agent, kind)
    client = Client(headers={"Authorization": header} if header is not None else {})
    response = client.get("/api/v1/me/")
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("kind", ["missing", "right prefix, wrong secret", "revoked"])
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_it_asks_for_a_key_on_every_endpoint(agent, kind, method, path):
    action_type = ActionTypeFactory(slug="payments.refund")
    GrantFactory(agent=agent, action_type=action_type)
    header = _header(agent, kind)
    client = Client(headers={"Authorization": header} if header is not None else {})
    body = {"action_type": "payments.refund", "payload": {}, "reasoning": "Refund."}
    response = client.get(path) if method == "get" else post_json(client, path, body)
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"
    assert not Action.objects.exists()


def test_it_gives_every_bad_key_the_same_message(agent):
    messages = {
        assert_error(Client(headers={"Authorization": _header(agent, kind)}).get("/api/v1/me/"), 401, "unauthorized")[
            "message"
        ]
        for kind in ["unknown prefix", "right prefix, wrong secret", "expired", "revoked"]
    }
    assert len(messages) == 1, messages


def test_it_accepts_a_key_until_it_expires(agent):
    raw = new_key(agent, expires_at=timezone.now() + timedelta(hours=1))
    assert api_client(raw_key=raw).get("/api/v1/me/").status_code == 200
    AgentKey.objects.filter(prefix=raw[:12]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(api_client(raw_key=raw).get("/api/v1/me/"), 401, "unauthorized")


def test_it_refuses_a_key_from_the_moment_it_is_revoked(agent):
    raw = new_key(agent)
    client = api_client(raw_key=raw)
    assert client.get("/api/v1/me/").status_code == 200
    revoke_key(AgentKey.objects.get(prefix=raw[:12]), actor=Actor.system("tests"))
    assert_error(client.get("/api/v1/me/"), 401, "unauthorized")


def test_it_keeps_the_other_keys_of_the_agent_working_after_one_is_revoked(agent):
    revoked, kept = new_key(agent), new_key(agent)
    revoke_key(AgentKey.objects.get(prefix=revoked[:12]), actor=Actor.system("tests"))
    assert api_client(raw_key=kept).get("/api/v1/me/").status_code == 200


# ---------------------------------------------------------------- last used


def _key_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "agents_agentkey"')]


def test_it_records_last_use_on_first_use_then_at_most_once_a_minute(agent):
    raw = new_key(agent)
    key = AgentKey.objects.get(prefix=raw[:12])
    assert key.last_used_at is None
    client = api_client(raw_key=raw)

    before = timezone.now()
    with CaptureQueriesContext(connection) as first:
        assert client.get("/api/v1/me/").status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert client.get("/api/v1/actions/").status_code == 200

    assert len(_key_updates(first)) == 1
    assert _key_updates(second) == []
    key.refresh_from_db()
    assert before <= key.last_used_at <= timezone.now()

    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    AgentKey.objects.filter(pk=key.pk).update(last_used_at=two_minutes_ago)
    with CaptureQueriesContext(connection) as third:
        assert client.get("/api/v1/me/").status_code == 200
    assert len(_key_updates(third)) == 1
    key.refresh_from_db()
    assert key.last_used_at > two_minutes_ago + timedelta(minutes=1)


def test_it_does_not_record_use_of_a_refused_key(agent):
    raw = new_key(agent)
    revoke_key(AgentKey.objects.get(prefix=raw[:12]), actor=Actor.system("tests"))
    assert_error(api_client(raw_key=raw).get("/api/v1/me/"), 401, "unauthorized")
    assert AgentKey.objects.get(prefix=raw[:12]).last_used_at is None


# ---------------------------------------------------------------- audit


def test_it_writes_the_key_prefix_into_the_audit_event_of_a_proposal(agent):
    action_type = ActionTypeFactory(slug="payments.refund")
    GrantFactory(agent=agent, action_type=action_type)
    raw = new_key(agent)
    response = post_json(
        api_client(raw_key=raw),
        "/api/v1/actions/",
        {"action_type": "payments.refund", "payload": {"note": "order 1"}, "reasoning": "Damaged parcel."},
    )
    assert response.status_code == 201
    event = AuditEvent.objects.for_object(Action.objects.get()).get(verb="action.proposed")
    assert event.context["key_prefix"] == raw[:12]
    assert (event.actor_kind, event.actor_label) == ("agent", "refund-bot")
    assert raw[13:] not in str(event.context)
