"""Every way an action leaves pending, and every end of its execution, is
POSTed to the proposal's callback_url: approved, rejected, expired,
cancelled, succeeded, failed, rolled back, each once, signed so that the
check docs/api.md gives agents (the client's verify_signature with the
SHA-256 of the agent's key) accepts it, carrying the action as the API
shows it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents.client import SIGNATURE_HEADER
from approvals import services
from approvals.models import Callback, CallbackState
from approvals.rules.lifecycle import Status
from tests.api.test_api_keys import api_client, post_json
from tests.support.callbacking import (
    callback_secret,
    granted_type,
    loopback_callbacks_allowed,
    new_key,
    propose_with_callback,
)
from tests.support.dispatching import webhook_type
from tests.support.factories import GrantFactory
from tests.support.receivers import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw_key(agent) -> str:
    return new_key(agent)


@pytest.fixture
def agent_endpoint(raw_key, settings) -> Iterator[Receiver]:
    loopback_callbacks_allowed(settings)
    with Receiver(callback_secret(raw_key)) as running:
        yield running


def docs_check() -> Callable[[str, bytes, str | None], bool]:
    """The signature check docs/api.md gives agents, run as written."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    (block,) = [
        b for b in re.findall(r"```python[^\n]*\n(.*?)```", text, flags=re.DOTALL) if "callback_is_genuine" in b
    ]
    namespace: dict = {}
    exec(block, namespace)  # noqa: S102  (our own docs)
    return namespace["callback_is_genuine"]


def announced(endpoint: Receiver, action_id: object) -> list[str]:
    return [r.json()["status"] for r in endpoint.requests if r.json()["action"]["id"] == str(action_id)]


def test_every_way_out_of_pending_and_every_end_of_an_execution_is_called_back(
    agent, lead, raw_key, agent_endpoint, receiver
):
    parts = granted_type(agent)
    url = f"{agent_endpoint.url}/agent/decisions/"

    done = propose_with_callback(raw_key, parts, url)
    services.approve(done.pk, lead)
    services.report_result(done.pk, agent, succeeded=True, detail={"shipped": True})
    services.request_rollback(done.pk, lead, reason="Shipped to the wrong address.")
    services.report_rollback(done.pk, agent, succeeded=True)

    broken = propose_with_callback(raw_key, parts, url)
    services.approve(broken.pk, lead)
    services.report_result(broken.pk, agent, succeeded=False, detail={"error": "out of stock"})

    rejected = propose_with_callback(raw_key, parts, url)
    services.reject(rejected.pk, lead, reason="Not covered by the warranty.")
    expired = propose_with_callback(raw_key, parts, url)
    services.expire(expired.pk)
    cancelled = propose_with_callback(raw_key, parts, url)
    services.cancel(cancelled.pk, agent)

    refund = webhook_type(receiver.url, slug="payments.refund")
    GrantFactory(agent=agent, action_type=refund)
    dispatched = propose_with_callback(raw_key, refund, url, note="order 1001", amount=25.0)
    services.approve(dispatched.pk, lead)  # dispatched by the (eager) worker after commit

    assert announced(agent_endpoint, done.pk) == [Status.APPROVED, Status.SUCCEEDED, Status.ROLLED_BACK]
    assert announced(agent_endpoint, broken.pk) == [Status.APPROVED, Status.FAILED]
    assert announced(agent_endpoint, rejected.pk) == [Status.REJECTED]
    assert announced(agent_endpoint, expired.pk) == [Status.EXPIRED]
    assert announced(agent_endpoint, cancelled.pk) == [Status.CANCELLED]
    assert announced(agent_endpoint, dispatched.pk) == [Status.APPROVED, Status.SUCCEEDED]
    assert len(receiver.effects) == 1  # the refund itself went to the target, once

    callback_is_genuine = docs_check()
    for request in agent_endpoint.requests:
        # Exactly as an agent checks it: the client's own verify_signature, with the key's hash (docs/api.md).
        assert callback_is_genuine(raw_key, request.body, request.headers[SIGNATURE_HEADER])
        assert request.path == "/agent/decisions/"
    assert not callback_is_genuine(new_key(agent), request.body, request.headers[SIGNATURE_HEADER])
    assert not callback_is_genuine(raw_key, request.body + b" ", request.headers[SIGNATURE_HEADER])
    assert len({request.key for request in agent_endpoint.requests}) == len(agent_endpoint.requests)
    assert set(Callback.objects.values_list("state", flat=True)) == {CallbackState.DELIVERED}

    rejection = next(r.json() for r in agent_endpoint.requests if r.json()["status"] == Status.REJECTED)
    assert rejection["verb"] == "action.rejected"
    assert rejection["action"]["decisions"][0]["comment"] == "Not covered by the warranty."
    assert rejection["action"]["url"].endswith(f"/api/v1/actions/{rejected.pk}/")


def test_no_callback_without_a_callback_url(agent, lead, raw_key, agent_endpoint):
    parts = granted_type(agent)
    response = post_json(
        api_client(raw_key=raw_key),
        "/api/v1/actions/",
        {"action_type": parts.slug, "payload": {"note": "x"}, "reasoning": "Because."},
    )
    services.approve(response.json()["id"], lead)
    assert not agent_endpoint.requests and not Callback.objects.exists()
