"""The action page shows, field by field, what the agent proposed, what a
lead approved and by whom: who edited each changed field, who approved the
payload that stands, and whose approval of an earlier payload no longer counts."""

from __future__ import annotations

import html
import re

import pytest

from agents.models import Tier
from approvals import services
from approvals.models import Action, Risk
from approvals.rules.digests import payload_digest
from tests.support.factories import GrantFactory, UserFactory
from tests.support.money import LeadBrowser, payment, payment_type

pytestmark = pytest.mark.django_db


@pytest.fixture
def critical(agent) -> Action:
    action_type = payment_type(risk=Risk.CRITICAL)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(agent, action_type, payload=payment(100, "ACC-A"), reasoning="Invoice due.")
    return action


def field_row(page: str, path: str) -> list[str]:
    row = re.search(rf'<tr[^>]*data-field="{re.escape(path)}">(.*?)</tr>', page, re.S)[1]
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]


def test_it_shows_per_field_what_was_proposed_approved_and_by_whom(critical, lead, other_lead, department):
    tara = UserFactory(username="tara-lead")
    department.leads.add(tara)
    services.approve(critical.pk, lead)
    services.approve(critical.pk, other_lead, edited_payload=payment(250, "ACC-B"))
    services.approve(critical.pk, tara)

    page = LeadBrowser(lead).open(critical)

    assert field_row(page, "amount") == [
        "amount",
        "100",
        "250",
        "edited by omar-lead; approved by omar-lead, tara-lead",
    ]
    assert field_row(page, "account") == [
        "account",
        '"ACC-A"',
        '"ACC-B"',
        "edited by omar-lead; approved by omar-lead, tara-lead",
    ]
    assert field_row(page, "currency") == ["currency", '"EUR"', '"EUR"', "approved by omar-lead, tara-lead"]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())
    assert f"Payload digest {payload_digest(payment(250, 'ACC-B'))}: 2 of 2 approvals of exactly this payload." in text
    assert "lena-lead approved an earlier payload, since edited: that approval no longer counts." in text


def test_it_says_nothing_is_approved_yet_after_an_edit_of_a_waiting_action(critical, other_lead, lead):
    services.approve(critical.pk, other_lead, edited_payload=payment(90, "ACC-A"))

    page = LeadBrowser(lead).open(critical)

    assert field_row(page, "amount") == ["amount", "100", "90", "edited by omar-lead; approved by omar-lead"]
    assert "1 of 2 approvals of exactly this payload." in " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())
