"""manage.py simulate_policy: the same change as the page, as text or JSON
for a change ticket, and a clear error (never a traceback) for bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import Tier
from approvals.models import PromotionPolicy
from audit.models import AuditEvent
from tests.support.replay_histories import days_ago, grant, proposed, refund_type, rejected

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def refunds(agent, lead):
    PromotionPolicy.objects.create(department=agent.department, demote_threshold=Decimal(0))
    refunds = refund_type()
    grant(agent, refunds, tier=Tier.EXECUTOR, auto_approve_max_amount=Decimal("100.00"))
    proposed(agent, refunds, days_ago(2), "40.00")
    rejected(proposed(agent, refunds, days_ago(1), "300.00"), lead)
    return refunds


def run(*args: str) -> str:
    out = StringIO()
    call_command("simulate_policy", *args, stdout=out)
    return out.getvalue()


def test_it_prints_the_comparison_as_json_for_a_change_ticket(refunds, lead):
    out = run(
        "--grant", "refund-bot:payments.refund", "--set", "auto_approve_max_amount=500", "--json", "--as", lead.username
    )
    result = json.loads(out)
    assert result["change"]["edits"] == {"auto_approve_max_amount": {"now": "100.00", "proposed": "500"}}
    assert result["newly_auto_approved"]["cost"] == {"count": 1, "money": {"EUR": "300.00"}}
    assert result["window"]["days"] == 30
    event = AuditEvent.objects.filter(verb="policy.simulated").get()
    assert event.actor_label == lead.username


def test_it_prints_a_table_in_words_by_default(refunds):
    out = run("--grant", "refund-bot:payments.refund", "--set", "auto_approve_max_amount=500", "--days", "7")
    assert "Auto-approved" in out and "Queued for a human" in out
    assert "300.00 EUR" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grant", "nobody:payments.refund", "--set", "tier=executor"], "No grant 'nobody:payments.refund'."),
        (["--grant", "refund-bot:payments.refund", "--set", "tier=boss"], "tier: Select a valid choice."),
        (["--grant", "refund-bot:payments.refund", "--set", "auto_approve_max_amount=lots"], "Enter a number."),
        (["--grant", "refund-bot:payments.refund", "--set", "colour=red"], "not colour"),
        (["--grant", "refund-bot:payments.refund"], "Say what would change"),
        (["--action-type", "payments.nothing", "--set", "risk=high"], "No action type 'payments.nothing'."),
        (["--policy", "nowhere", "--set", "min_decisions=10"], "No department 'nowhere'."),
        (["--policy", "finance", "--set", "demote_threshold=0.99"], "cannot be above the promotion threshold"),
        (["--grant", "refund-bot:payments.refund", "--set", "tier=contributor", "--days", "0"], "--days must be"),
        (["--grant", "refund-bot:payments.refund", "--set", "min_confidence=0.800"], "nothing to simulate"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_error(refunds, args, message):
    with pytest.raises(CommandError, match=message.replace(".", r"\.").replace("'", "'")):
        run(*args)
    assert not AuditEvent.objects.filter(verb="policy.simulated").exists()


def test_executor_on_a_high_risk_type_is_refused_as_the_admin_refuses_it(refunds):
    refunds.risk = "high"
    refunds.save()
    with pytest.raises(CommandError, match="never go past contributor"):
        run("--grant", "refund-bot:payments.refund", "--set", "tier=executor", "--set", "min_confidence=0.5")
