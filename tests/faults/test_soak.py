"""A short soak in the suite: proposals at a fixed rate through the agent API
while leads decide through the queue's endpoints, on the real ASGI app
(uvicorn, PostgreSQL, Redis); afterwards the load client, the actions table
and the audit trail agree, nothing lost, nothing doubled, no 5xx. The same
engine (tests/support/soak.py) runs for 5 minutes with bench/soak.py."""

from __future__ import annotations

import pytest

from approvals.api.views import AgentRateThrottle
from tests.support import soak

pytestmark = pytest.mark.django_db(transaction=True)

RATE = 12  # proposals per second
SECONDS = 20


@pytest.fixture
def fleet(real_services) -> soak.Fleet:
    # Seeded before the server starts answering; the server sees committed rows.
    return soak.seed(soak.new_run_id(), agents=3, leads=3)


def test_the_counts_agree_after_a_short_soak(fleet, asgi_server, monkeypatch):
    # Replays and retries count against an agent's limit too; the soak is
    # about what is stored, not about the throttle.
    monkeypatch.setattr(AgentRateThrottle, "rate", "100000/min")

    load = soak.drive(asgi_server.url, fleet, rate=RATE, seconds=SECONDS)
    result = soak.reconcile(fleet, load)

    report = f"{soak.summary(load)}\n{result.table()}"
    print(report)  # shown with -s, and with the failure
    assert result.ok, report
    assert load.sent == RATE * SECONDS
    assert load.proposal_statuses == {201: RATE * SECONDS}, report
    assert load.replays["same"] == len(range(0, RATE * SECONDS, soak.REPLAY_EVERY)), report
    # The leads really decided, and some of their clicks raced each other.
    assert load.decisions_won["approve"] > 0 and load.decisions_won["reject"] > 0, report
