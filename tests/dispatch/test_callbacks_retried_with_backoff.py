"""A callback that meets a 5xx (or no answer) is tried again later, each
wait twice the one before, with the same body and Idempotency-Key; each
attempt is an audit event. A 4xx is final, and so is the last attempt.
On the embedded run, where tasks cannot wait, the sweep sends what is due."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from approvals import services, tasks
from approvals.dispatch import callbacks
from approvals.models import Callback, CallbackState
from audit.models import AuditEvent
from tests.support.callbacking import (
    callback_secret,
    granted_type,
    loopback_callbacks_allowed,
    new_key,
    propose_with_callback,
)
from tests.support.receivers import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw_key(agent) -> str:
    return new_key(agent)


@pytest.fixture
def agent_endpoint(raw_key, settings) -> Iterator[Receiver]:
    loopback_callbacks_allowed(settings)
    settings.CALLBACK_RETRY_BASE_SECONDS = 5
    with Receiver(callback_secret(raw_key)) as running:
        yield running


def rejected_with_callback(agent, lead, raw_key, endpoint) -> Callback:
    action = propose_with_callback(raw_key, granted_type(agent), f"{endpoint.url}/cb/")
    services.reject(action.pk, lead, reason="No.")  # the first attempt goes after commit
    return Callback.objects.get()


def attempts() -> list[dict]:
    return [event.after for event in AuditEvent.objects.filter(verb__startswith="action.callback_").order_by("pk")]


def test_a_5xx_is_retried_with_exponential_backoff_until_it_is_delivered(agent, lead, raw_key, agent_endpoint):
    agent_endpoint.answer(Answer(500), Answer(503))
    callback = rejected_with_callback(agent, lead, raw_key, agent_endpoint)
    assert callback.state == CallbackState.QUEUED and callback.attempts == 1

    assert callbacks.attempt(callback.pk) is None  # not due yet: nobody calls before the backoff
    first_retry_at = callback.next_attempt_at
    second = callbacks.attempt(callback.pk, now=first_retry_at)
    assert second is not None and second.outcome == "retry"
    callback.refresh_from_db()
    third = callbacks.attempt(callback.pk, now=callback.next_attempt_at)
    assert third is not None and third.outcome == "delivered"

    callback.refresh_from_db()
    assert callback.state == CallbackState.DELIVERED and callback.attempts == 3
    assert [a["retry_in_seconds"] for a in attempts()] == [5.0, 10.0, None]
    assert [a["http_status"] for a in attempts()] == [500, 503, 201]
    assert [e.verb for e in AuditEvent.objects.filter(verb__startswith="action.callback_").order_by("pk")] == [
        "action.callback_retry",
        "action.callback_retry",
        "action.callback_delivered",
    ]
    sent = agent_endpoint.requests
    assert len(sent) == 3 and len({r.body for r in sent}) == 1 and len({r.key for r in sent}) == 1
    assert [r.headers["X-Countersign-Attempt"] for r in sent] == ["1", "2", "3"]
    assert all(r.signature_valid for r in sent)


def test_a_4xx_is_final_and_so_is_the_last_attempt(agent, lead, raw_key, agent_endpoint, settings):
    agent_endpoint.answer(Answer(410))
    gone = rejected_with_callback(agent, lead, raw_key, agent_endpoint)
    assert gone.state == CallbackState.FAILED and gone.attempts == 1 and gone.last_http_status == 410
    assert callbacks.attempt(gone.pk, now=gone.next_attempt_at) is None

    Callback.objects.all().delete()
    settings.CALLBACK_MAX_ATTEMPTS = 2
    agent_endpoint.answer(Answer(500), Answer(500))
    action = propose_with_callback(raw_key, granted_type(agent, slug="parts.other"), f"{agent_endpoint.url}/cb/")
    services.cancel(action.pk, agent)
    flaky = Callback.objects.get()
    last = callbacks.attempt(flaky.pk, now=flaky.next_attempt_at)
    assert last is not None and last.outcome == "failed"
    flaky.refresh_from_db()
    assert flaky.state == CallbackState.FAILED and flaky.attempts == 2
    assert AuditEvent.objects.filter(verb="action.callback_failed").count() == 2


def test_the_sweep_sends_a_retry_that_is_due(agent, lead, raw_key, agent_endpoint):
    agent_endpoint.answer(Answer(502))
    callback = rejected_with_callback(agent, lead, raw_key, agent_endpoint)
    tasks.sweep_dispatches()
    assert len(agent_endpoint.requests) == 1  # not due: the sweep leaves it
    # As if the backoff and the sweep's grace had passed (the outbox row is the clock here).
    Callback.objects.filter(pk=callback.pk).update(next_attempt_at=callback.created_at - timedelta(minutes=1))
    tasks.sweep_dispatches()
    callback.refresh_from_db()
    assert callback.state == CallbackState.DELIVERED and len(agent_endpoint.requests) == 2
