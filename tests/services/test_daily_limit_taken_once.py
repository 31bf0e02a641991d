"""Two proposals at once cannot both take the day's last slot: the second
waits on the grant's row, which the first holds until it commits, and then
counts the first."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections, transaction

from agents.models import Agent, Tier
from approvals import services
from approvals.models import Action, ActionType, Verdict
from tests.support.factories import GrantFactory
from tests.support.money import payment, payment_type

pytestmark = pytest.mark.django_db(transaction=True)


def _propose(agent: Agent, action_type: ActionType) -> Action:
    action, _created = services.propose(agent, action_type, payload=payment(10), reasoning="Invoice due today.")
    return action


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_the_second_of_two_proposals_at_once_waits_and_finds_the_day_used_up(agent):
    action_type = payment_type()
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR, max_actions_per_day=1)
    second: dict[str, Any] = {}

    def propose_second() -> None:
        try:
            second["action"] = _propose(agent, action_type)
        finally:
            connections.close_all()

    with transaction.atomic():
        first = _propose(agent, action_type)  # holds the grant's row until this block commits
        racer = threading.Thread(target=propose_second)
        racer.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock():
            assert racer.is_alive() and time.monotonic() < deadline, "the second proposal did not wait for the grant"
    racer.join(timeout=10)
    assert first.verdict != Verdict.BLOCKED
    assert second["action"].verdict == Verdict.BLOCKED
    assert second["action"].verdict_code == "limit_exceeded"
