"""Two leads deciding the same action at the same moment, 500 times over
(PostgreSQL, a thread and a connection per lead, released together by a
barrier each round): exactly one decision wins each time, the status moves
once, and the loser is refused cleanly (never an error, never forced).
tests/services/test_decision_races.py and tests/pages/test_queue_live.py race more leads
through the real server; this is the literal 500."""

from __future__ import annotations

import random
import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from agents.models import Tier
from approvals import live, services
from approvals.models import Action, Decision
from approvals.rules.lifecycle import IllegalTransition, Status
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, GrantFactory

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 500
REFUSED = (IllegalTransition, services.DecisionRefused)


def test_two_leads_deciding_the_same_action_500_times_at_once_win_exactly_once_each_time(
    agent, lead, other_lead, monkeypatch, settings
):
    settings.AUDIT_SEALING = "off"  # chaining is not what races here; the events are counted below
    # The live push after each commit is not what races here (and costs a Redis round trip each).
    monkeypatch.setattr(live, "publish_action_changed", lambda *args: None)
    action_type = ActionTypeFactory(slug="payments.refund")
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    # Proposed in bulk (the race is about deciding): pending, as a proposal leaves them.
    proposal = {"payload": {"note": "x"}, "reasoning": "Charged twice.", "confidence": Decimal("0.9")}
    first, _ = services.propose(agent, action_type, **proposal)
    fields = {f.attname: getattr(first, f.attname) for f in Action._meta.concrete_fields if not f.primary_key}
    Action.objects.bulk_create(Action(**fields) for _ in range(ROUNDS - 1))
    ids = [str(pk) for pk in Action.objects.order_by("created_at", "pk").values_list("pk", flat=True)]
    assert len(ids) == ROUNDS

    rng = random.Random(9)
    verbs = [(rng.choice(("approve", "reject")), rng.choice(("approve", "reject"))) for _ in ids]
    barrier = threading.Barrier(2)
    outcomes: list[Counter[str]] = [Counter(), Counter()]

    def lead_at_work(index: int, user: object) -> None:
        try:
            for action_id, pair in zip(ids, verbs, strict=True):
                barrier.wait(timeout=10)
                try:
                    if pair[index] == "approve":
                        services.approve(action_id, user)
                    else:
                        services.reject(action_id, user, reason="Not this one.")
                    outcomes[index]["won"] += 1
                except REFUSED:
                    outcomes[index]["refused"] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=lead_at_work, args=(i, u)) for i, u in enumerate((lead, other_lead))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()

    wins = outcomes[0]["won"] + outcomes[1]["won"]
    refusals = outcomes[0]["refused"] + outcomes[1]["refused"]
    assert (wins, refusals) == (ROUNDS, ROUNDS), outcomes  # one winner and one clean refusal per round
    assert outcomes[0]["won"] and outcomes[1]["won"], outcomes  # both leads won some races
    statuses = Counter(Action.objects.values_list("status", flat=True))
    assert set(statuses) <= {Status.APPROVED, Status.REJECTED, Status.DISPATCHING, Status.SUCCEEDED}
    assert Decision.objects.count() == ROUNDS
    assert set(Counter(Decision.objects.values_list("action_id", flat=True)).values()) == {1}
    moves = Counter(
        AuditEvent.objects.filter(verb__in=("action.approved", "action.rejected")).values_list("object_id", flat=True)
    )
    assert len(moves) == ROUNDS and set(moves.values()) == {1}
