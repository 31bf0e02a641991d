"""On PostgreSQL the replay reads a grant's proposals as the index keeps them,
in chunks the walk takes as they come, and tells the planner so for that one
query only: the settings it changes are set back to what they were, inside
the caller's transaction too."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction

from agents.models import Tier
from approvals.replay import changes, engine, report
from audit.log import Actor
from tests.support.replay_histories import approved, days_ago, grant, proposed, refund_type

pytestmark = pytest.mark.django_db  # PostgreSQL: the first of ./test's runs


def planner_settings() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_sort'), current_setting('max_parallel_workers_per_gather')")
        return cursor.fetchone()


def test_the_planner_settings_are_set_back_after_the_rows_are_read(agent, lead):
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal("100.00"))
    for n in range(3):
        approved(proposed(agent, refunds, days_ago(n + 1, 10), "250.00"), lead, after=timedelta(hours=1))
    change = changes.proposed("grant", "refund-bot:payments.refund", {"auto_approve_max_amount": "300"})
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 1")  # not the default: set back, not reset
        result = report.simulate(change, actor=Actor.system("test"), days=7).as_dict()
        assert planner_settings() == ("on", "1")
    assert result["newly_auto_approved"]["count"] == 3


def test_a_replay_that_fails_while_the_rows_stream_leaves_the_settings_as_they_were(agent, lead, monkeypatch):
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal("100.00"))
    for n in range(3):
        approved(proposed(agent, refunds, days_ago(n + 1, 10), "250.00"), lead, after=timedelta(hours=1))
    change = changes.proposed("grant", "refund-bot:payments.refund", {"auto_approve_max_amount": "300"})

    walk = engine._Walk.run

    def fails(self, rows):
        if isinstance(rows, list):  # a day read at once, before the stream
            return walk(self, rows)
        next(iter(rows))  # the stream has begun
        raise RuntimeError("the walk broke")

    monkeypatch.setattr(engine._Walk, "run", fails)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 1")
        with pytest.raises(RuntimeError, match="the walk broke"):
            report.simulate(change, actor=Actor.system("test"), days=7)
        assert planner_settings() == ("on", "1")  # the replay's savepoint rolled back, and the settings with it
