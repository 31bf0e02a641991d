"""Where an action type's money lives is set in the admin and by seed_demo:
the admin shows and checks the amount path, the currency path and the fixed
currency; seed_demo gives its money-moving types their paths, and its demo
actions' amounts are the ones their payloads carry."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from approvals.models import Action, ActionType
from tests.support.factories import ActionTypeFactory

pytestmark = pytest.mark.django_db


def test_the_admin_shows_where_the_money_lives(admin_client):
    action_type = ActionTypeFactory(slug="payments.pay", amount_path="refund.amount", currency="EUR")

    page = admin_client.get(f"/admin/approvals/actiontype/{action_type.pk}/change/").content.decode()

    assert 'name="amount_path" value="refund.amount"' in page
    assert 'name="currency_path"' in page
    assert 'name="currency" value="EUR"' in page


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount_path": "amount", "currency_path": "currency", "currency": "EUR"}, "currency"),
        ({"currency": "EUR"}, "amount_path"),
        ({"amount_path": "refund..amount"}, "amount_path"),
        ({"amount_path": "amount", "currency": "euro"}, "currency"),
    ],
    ids=["path and fixed currency", "currency without amount", "not a dotted path", "not a currency code"],
)
def test_it_refuses_money_settings_that_cannot_be_read(fields, field):
    with pytest.raises(ValidationError) as error:
        ActionType(slug="payments.pay", name="Pay", **fields).full_clean()
    assert field in error.value.message_dict


def test_seed_demo_reads_its_payments_amounts_from_their_payloads():
    call_command("seed_demo", stdout=StringIO(), stderr=StringIO())

    money_types = dict(ActionType.objects.exclude(amount_path="").values_list("slug", "amount_path"))
    assert money_types == {"payments.refund": "amount", "payments.vendor_payment": "amount"}
    for action in Action.objects.filter(action_type__slug__in=money_types):
        assert action.amount == Decimal(str(action.payload["amount"])).quantize(Decimal("0.01"))
        assert action.currency == action.payload["currency"]
    assert not Action.objects.filter(action_type__amount_path="", amount__isnull=False).exists()
