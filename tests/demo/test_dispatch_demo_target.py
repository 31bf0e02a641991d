"""The demo target (approvals/demo/target.py): the receiver the embedded run
dispatches the demo's webhook actions to. It checks signatures, acts once
per Idempotency-Key, fails on request and takes rollbacks."""

from __future__ import annotations

import json
import uuid

import pytest

from agents.client import SIGNATURE_HEADER, sign
from approvals.models import Executor
from tests.support.factories import ActionTypeFactory

pytestmark = pytest.mark.django_db

SLUG = "payments.refund"


@pytest.fixture(autouse=True)
def demo_target_on(settings) -> None:
    settings.DEMO_TARGET = True


@pytest.fixture
def action_type():
    return ActionTypeFactory(slug=SLUG, executor=Executor.WEBHOOK, webhook_url="http://localhost:8000/demo-target/ok/")


def deliver(client, action_type, mode="ok", *, key=None, body=None, secret=None, rollback=False):
    key = key or str(uuid.uuid4())
    content = json.dumps(body or {"event": "dispatch", "id": key, "payload": {"amount": 45}}).encode()
    path = f"/demo-target/{mode}/{action_type.slug}/" + ("rollback/" if rollback else "")
    return client.post(
        path,
        content,
        content_type="application/json",
        headers={"Idempotency-Key": key, SIGNATURE_HEADER: sign(secret or action_type.webhook_secret, content)},
    )


def test_it_carries_out_a_signed_request_once_per_idempotency_key(client, action_type):
    key = str(uuid.uuid4())
    first = deliver(client, action_type, key=key)
    again = deliver(client, action_type, key=key)

    assert first.status_code == 201
    assert first.json()["reference"].startswith("REFUND-")
    assert first.json()["undo"] == {"reference": first.json()["reference"]}
    assert again.status_code == 200
    assert again.json() == first.json()  # the first answer again: no second effect


def test_it_refuses_a_request_signed_with_another_secret(client, action_type):
    refused = deliver(client, action_type, secret="not-the-secret")

    assert refused.status_code == 401


def test_it_refuses_a_tampered_body(client, action_type):
    key = str(uuid.uuid4())
    content = json.dumps({"id": key, "payload": {"amount": 45}}).encode()
    header = sign(action_type.webhook_secret, content)

    refused = client.post(
        f"/demo-target/ok/{SLUG}/",
        content.replace(b"45", b"4500"),
        content_type="application/json",
        headers={"Idempotency-Key": key, SIGNATURE_HEADER: header},
    )

    assert refused.status_code == 401


def test_it_fails_the_first_delivery_when_flaky_and_takes_the_retry(client, action_type):
    key = str(uuid.uuid4())

    assert deliver(client, action_type, "flaky", key=key).status_code == 503
    assert deliver(client, action_type, "flaky", key=key).status_code == 201


@pytest.mark.parametrize(("mode", "status"), [("reject", 422), ("down", 503), ("nonsense", 404)])
def test_it_fails_on_purpose(client, action_type, mode, status):
    assert deliver(client, action_type, mode).status_code == status


def test_it_rolls_back_what_it_did(client, action_type):
    key = str(uuid.uuid4())
    done = deliver(client, action_type, key=key).json()

    undone = deliver(
        client, action_type, key=f"{key}:rollback", body={"event": "rollback", "undo": done["undo"]}, rollback=True
    )

    assert undone.status_code == 200
    assert undone.json() == {"rolled_back": done["reference"]}


def test_it_refuses_a_rollback_without_an_undo_reference(client, action_type):
    refused = deliver(client, action_type, body={"event": "rollback", "undo": None}, rollback=True)

    assert refused.status_code == 422


def test_it_is_not_there_when_off(client, action_type, settings):
    settings.DEMO_TARGET = False

    assert deliver(client, action_type).status_code == 404
