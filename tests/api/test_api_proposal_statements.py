"""A new proposal is answered from what was just written: its decisions and
executions (none yet) are not read back, and no statement reads the action
again. What it does write and read is the grant (locked), the action and its
audit event (one statement on PostgreSQL) and the day's counters under a daily
limit (sent with the lock on PostgreSQL: one round trip)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Tier
from tests.api.test_api_keys import api_client, post_json
from tests.api.test_api_proposals import ACTIONS, granted, refund

pytestmark = pytest.mark.django_db

READ_BACK = ('FROM "approvals_action"', '"approvals_decision"', '"approvals_execution"')


@pytest.mark.parametrize("tier", [Tier.EXECUTOR, Tier.CONTRIBUTOR, Tier.OBSERVER])
def test_a_new_proposal_is_answered_without_reading_it_back(agent, tier):
    granted(agent, tier=tier)
    client = api_client(agent)
    with CaptureQueriesContext(connection) as captured:
        answer = post_json(client, ACTIONS, refund())
    assert answer.status_code == 201, answer.content[:300]
    assert answer.json()["decisions"] == answer.json()["executions"] == []
    statements = [query["sql"] for query in captured.captured_queries]
    assert [s for s in statements if s.startswith("SELECT") and any(table in s for table in READ_BACK)] == []
    writes = [s for s in statements if "INSERT INTO" in s]
    if connection.vendor == "postgresql":  # the action and its audit event in one statement
        assert len(writes) == 1 and '"approvals_action"' in writes[0] and '"audit_auditevent"' in writes[0]
    else:
        assert len(writes) == 2


@pytest.mark.embedded
def test_the_days_counters_go_with_the_grants_lock(agent):
    granted(agent, tier=Tier.CONTRIBUTOR, max_actions_per_day=1)
    client = api_client(agent)
    assert post_json(client, ACTIONS, refund()).status_code == 201
    with CaptureQueriesContext(connection) as captured:
        answer = post_json(client, ACTIONS, refund(reasoning="A second parcel, also damaged."))
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "limit_exceeded")  # the first was counted
    counts = [query["sql"] for query in captured.captured_queries if "COUNT(*)" in query["sql"]]
    assert len(counts) == 1
    if connection.vendor == "postgresql":  # one query: the lock, then the count
        assert "FOR UPDATE" in counts[0].split("COUNT(*)")[0]
    else:
        assert "agents_grant" not in counts[0]
