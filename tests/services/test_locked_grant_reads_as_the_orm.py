"""The proposal's grant lock reads the grant in written SQL
(services.proposals._locked_grant): it must read each field as the ORM does,
value and type, on both backends. SQLite keeps decimals and times in forms
of its own, which only the backend's converters turn back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from agents.models import Grant, Tier
from approvals.services.proposals import _locked_grant
from tests.support.factories import GrantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.mark.parametrize(
    "terms",
    [
        {},
        {
            "tier": Tier.EXECUTOR,
            "max_amount_per_action": Decimal("400.00"),
            "max_actions_per_day": 40,
            "max_amount_per_day": Decimal("1200.50"),
            "auto_approve_max_amount": Decimal("150.00"),
            "min_confidence": Decimal("0.799"),
            "tier_changed_at": timezone.now(),
        },
    ],
    ids=["defaults", "every term set"],
)
def test_the_locked_grant_is_read_as_the_orm_reads_it(agent, terms: dict[str, Any]):
    grant = GrantFactory(agent=agent, **terms)

    locked, paused, _counters = _locked_grant(agent, grant.action_type)

    read = Grant.objects.get(pk=grant.pk)
    for field in Grant._meta.concrete_fields:
        ours, theirs = getattr(locked, field.attname), getattr(read, field.attname)
        assert (ours, type(ours)) == (theirs, type(theirs)), field.attname
    assert paused is False
    assert not locked._state.adding
