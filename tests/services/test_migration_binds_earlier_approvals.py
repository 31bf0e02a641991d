"""Migration 0008 binds the approvals given before digests existed to the
payload each approved: the proposal, or the edit standing when it was given."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from approvals import services
from approvals.models import Decision, DecisionVerdict, Risk
from approvals.rules.digests import payload_digest
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("approvals.migrations.0008_money_from_payload_and_approval_digests")


def test_it_gives_each_earlier_approval_the_digest_of_the_payload_it_approved(propose, lead, other_lead):
    action = propose(risk=Risk.CRITICAL)
    edited = {"note": "half"}
    third = UserFactory(username="tara-lead")
    Decision.objects.create(action=action, user=lead, verdict=DecisionVerdict.APPROVE)
    Decision.objects.create(action=action, user=other_lead, verdict=DecisionVerdict.EDIT_APPROVE, edited_payload=edited)
    Decision.objects.create(action=action, user=third, verdict=DecisionVerdict.APPROVE)

    migration.bind_earlier_approvals(apps, None)

    digests = dict(action.decisions.values_list("user__username", "payload_digest"))
    assert digests == {
        "lena-lead": payload_digest(action.payload),
        "omar-lead": payload_digest(edited),
        "tara-lead": payload_digest(edited),
    }
    assert services.approvers_of(action, payload_digest(edited)) == 2
