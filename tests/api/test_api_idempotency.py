"""Idempotent proposals: the same key and body replay the original (200), the
same key with another body is a conflict (409), the key comes in the body or
the Idempotency-Key header alike, and duplicates racing each other make one
action."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from agents.models import Tier
from approvals import services
from approvals.models import Action
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client, assert_error, new_key, post_json
from tests.api.test_api_proposals import ACTIONS, granted, refund
from tests.support.factories import ActionTypeFactory, AgentFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.django_db


def proposed_events() -> int:
    return AuditEvent.objects.filter(verb="action.proposed").count()


def test_it_replays_the_same_key_and_body_with_200_and_the_original(agent):
    granted(agent)
    client = api_client(agent)
    first = post_json(client, ACTIONS, refund(idempotency_key="refund-A-1001"))
    again = post_json(client, ACTIONS, refund(idempotency_key="refund-A-1001"))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert again.json()["idempotency_key"] == "refund-A-1001"
    assert Action.objects.count() == 1
    assert proposed_events() == 1


def test_it_replays_the_action_as_it_is_now(agent, lead):
    granted(agent)
    client = api_client(agent)
    first = post_json(client, ACTIONS, refund(idempotency_key="refund-A-1001")).json()
    services.approve(first["id"], lead, comment="Photos check out.")

    again = post_json(client, ACTIONS, refund(idempotency_key="refund-A-1001"))
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["status"]) == (first["id"], "approved")
    assert [d["verdict"] for d in again.json()["decisions"]] == ["approve"]


@pytest.mark.parametrize(
    "other",
    [
        {"reasoning": "Another reason."},
        {"payload": {"order": "A-1002", "amount": 42.5}},
        {"amount": "43.00"},
        {"confidence": ...},
        {"context": {}},
        {"action_type": "payments.other"},
    ],
)
def test_it_refuses_the_same_key_with_another_body_with_409(agent, other):
    granted(agent)
    GrantFactory(agent=agent, action_type=ActionTypeFactory(slug="payments.other", payload_schema={}))
    client = api_client(agent)
    first = post_json(client, ACTIONS, refund(idempotency_key="refund-A-1001"))
    assert first.status_code == 201

    conflict = post_json(client, ACTIONS, refund(idempotency_key="refund-A-1001", **other))
    error = assert_error(conflict, 409, "idempotency_conflict")
    assert error["action_id"] == first.json()["id"]
    assert Action.objects.count() == 1
    assert proposed_events() == 1


@pytest.mark.parametrize(("first_in", "then_in"), [("body", "header"), ("header", "body"), ("header", "header")])
def test_it_takes_the_key_from_the_body_or_the_header_alike(agent, first_in, then_in):
    granted(agent)
    client = api_client(agent)

    def send(where: str) -> Any:
        if where == "body":
            return post_json(client, ACTIONS, refund(idempotency_key="refund-A-1001"))
        return post_json(client, ACTIONS, refund(), headers={"Idempotency-Key": "refund-A-1001"})

    first, again = send(first_in), send(then_in)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Action.objects.get().idempotency_key == "refund-A-1001"


def test_it_takes_the_same_key_in_both_places(agent):
    granted(agent)
    response = post_json(api_client(agent), ACTIONS, refund(idempotency_key="k-1"), headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 201
    assert Action.objects.get().idempotency_key == "k-1"


def test_it_refuses_a_header_and_a_body_key_that_differ(agent):
    granted(agent)
    response = post_json(api_client(agent), ACTIONS, refund(idempotency_key="k-1"), headers={"Idempotency-Key": "k-2"})
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"idempotency_key"}
    assert not Action.objects.exists()


@pytest.mark.parametrize("header", ["k" * 256, ""])
def test_it_refuses_a_header_key_of_the_wrong_length(agent, header):
    granted(agent)
    response = post_json(api_client(agent), ACTIONS, refund(), headers={"Idempotency-Key": header})
    assert "1 to 255 characters" in assert_error(response, 400, "invalid")["message"]
    assert not Action.objects.exists()


def test_it_takes_a_key_of_255_characters(agent):
    granted(agent)
    client = api_client(agent)
    first = post_json(client, ACTIONS, refund(), headers={"Idempotency-Key": "k" * 255})
    again = post_json(client, ACTIONS, refund(idempotency_key="k" * 255))
    assert (first.status_code, again.status_code) == (201, 200)


def test_it_makes_a_new_action_for_each_proposal_without_a_key(agent):
    granted(agent)
    client = api_client(agent)
    ids = {post_json(client, ACTIONS, refund()).json()["id"] for _ in range(3)}
    assert len(ids) == 3


def test_it_replays_a_blocked_proposal_as_the_same_403(agent):
    granted(agent, tier=Tier.EXECUTOR, max_amount_per_action=10)
    client = api_client(agent)
    first = assert_error(post_json(client, ACTIONS, refund(idempotency_key="k-1")), 403, "limit_exceeded")
    again = assert_error(post_json(client, ACTIONS, refund(idempotency_key="k-1")), 403, "limit_exceeded")
    assert again["action_id"] == first["action_id"]
    assert Action.objects.count() == 1


def test_it_keeps_the_keys_of_two_agents_apart(agent, department):
    other = AgentFactory(slug="refund-bot-2", owner=UserFactory(username="oscar-owner"), department=department)
    granted(agent)
    granted(other)
    mine = post_json(api_client(agent), ACTIONS, refund(idempotency_key="k-1"))
    theirs = post_json(api_client(other), ACTIONS, refund(idempotency_key="k-1", reasoning="Other reasons."))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert set(Action.objects.values_list("agent__slug", flat=True)) == {"refund-bot", "refund-bot-2"}


# ---------------------------------------------------------------- at once


@pytest.mark.django_db(transaction=True)
def test_it_makes_exactly_one_action_of_duplicates_sent_at_once(agent):
    granted(agent)
    raw = new_key(agent)
    threads, rounds = 8, 4

    for round_ in range(rounds):
        body = refund(idempotency_key=f"race-{round_}")
        start = threading.Barrier(threads)
        answers: list[Any] = [None] * threads

        def send(
            index: int,
            body: dict[str, Any] = body,
            start: threading.Barrier = start,
            answers: list[Any] = answers,
        ) -> None:
            client = api_client(raw_key=raw)
            try:
                start.wait()
                response = post_json(client, ACTIONS, body)
                answers[index] = (response.status_code, response.json().get("id"))
            except Exception as error:  # reported in the assertion, not lost in the thread
                answers[index] = repr(error)
            finally:
                connection.close()  # each thread has its own connection

        workers = [threading.Thread(target=send, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)

        statuses = sorted(answer[0] for answer in answers if isinstance(answer, tuple))
        assert statuses == [200] * (threads - 1) + [201], answers
        action = Action.objects.get(idempotency_key=f"race-{round_}")
        assert {answer[1] for answer in answers} == {str(action.pk)}
        assert AuditEvent.objects.for_object(action).filter(verb="action.proposed").count() == 1

    assert Action.objects.count() == rounds
