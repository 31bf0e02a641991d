"""An approval approves one exact payload. A critical action is dispatched
only with a payload that two different people approved, byte for byte: an
edit restarts the count on the edited payload (the editor counts as one), an
approval given on a page showing an older payload is refused, and the
webhook receives exactly the approved payload with its digest. Decided
through the real htmx endpoints, CSRF enforced, as leads' browsers do."""

from __future__ import annotations

import hashlib
import html
import json

import pytest

from agents.models import Tier
from approvals import services, tasks
from approvals.dispatch import executors
from approvals.models import Action, DecisionVerdict, Risk
from approvals.rules.digests import canonical, payload_digest
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.api.test_api_keys import api_client
from tests.support.dispatching import webhook_type
from tests.support.factories import GrantFactory, UserFactory
from tests.support.money import PAYMENT_SCHEMA, LeadBrowser, payment

pytestmark = pytest.mark.django_db

ACCOUNT_A = "DE89370400440532013000"
ACCOUNT_B = "GB33BUKB20201555555555"


@pytest.fixture(autouse=True)
def no_backoff(settings) -> None:
    settings.DISPATCH_RETRY_BASE_SECONDS = 0


@pytest.fixture
def third_lead(department):
    tara = UserFactory(username="tara-lead")
    department.leads.add(tara)
    return tara


@pytest.fixture
def vendor_payment(agent, receiver) -> Action:
    """A critical vendor payment of 100.00 to account A, waiting for two approvals."""
    action_type = webhook_type(
        receiver.url,
        slug="payments.vendor_payment",
        risk=Risk.CRITICAL,
        reversible=False,
        payload_schema=PAYMENT_SCHEMA,
        amount_path="amount",
        currency_path="currency",
        currency="",
    )
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    action, _ = services.propose(
        agent, action_type, payload=payment(100.00, ACCOUNT_A), reasoning="Invoice INV-2231 is due."
    )
    assert action.status == Status.PENDING
    return action


def verbs(action: Action) -> list[str]:
    return list(AuditEvent.objects.for_object(action).order_by("pk").values_list("verb", flat=True))


def test_it_dispatches_a_critical_payment_only_with_the_payload_two_people_approved(
    vendor_payment, lead, other_lead, third_lead, receiver
):
    lena, omar, tara = LeadBrowser(lead), LeadBrowser(other_lead), LeadBrowser(third_lead)
    action = vendor_payment
    lena.open(action)
    tara.open(action)  # tara reads the page now, and approves only later

    lena.approve(action)  # 100.00 to account A: one of two
    omar.open(action)
    edited = payment(999999, ACCOUNT_B)
    omar.approve(action, edited)  # 999,999 to account B: a new payload, its first approval

    action.refresh_from_db()
    assert action.status == Status.PENDING  # two approvals, but of two different payloads
    assert action.amount == 999999
    assert AuditEvent.objects.for_object(action).filter(verb="action.first_approval").last().after["approvals"] == 1

    # tara's page still shows 100.00 to account A: her approval is refused, nothing changes.
    refused = tara.approve(action)
    assert "The payload changed since you opened it" in html.unescape(refused.content.decode())
    action.refresh_from_db()
    assert (action.status, action.decisions.count()) == (Status.PENDING, 2)

    tara.open(action)  # now she reads 999,999 to account B
    tara.approve(action)

    action.refresh_from_db()
    assert action.status == Status.APPROVED
    digest = payload_digest(edited)
    decisions = {d.user.username: (d.verdict, d.payload_digest) for d in action.decisions.select_related("user")}
    assert decisions == {
        "lena-lead": (DecisionVerdict.APPROVE, payload_digest(payment(100.00, ACCOUNT_A))),
        "omar-lead": (DecisionVerdict.EDIT_APPROVE, digest),
        "tara-lead": (DecisionVerdict.APPROVE, digest),
    }

    assert tasks.dispatch_action(str(action.pk)) == executors.Outcome.SUCCEEDED

    [request] = receiver.requests
    assert request.signature_valid
    sent = request.json()
    assert sent["payload"] == edited
    assert request.headers["X-Countersign-Payload-Digest"] == sent["payload_digest"] == digest
    # The receiver can recompute the digest from what it got, byte for byte.
    assert hashlib.sha256(canonical(sent["payload"])).hexdigest() == digest
    assert canonical(sent["payload"]) == json.dumps(edited, sort_keys=True, separators=(",", ":")).encode()
    assert sent["approved_by"] == ["omar-lead", "tara-lead"]  # lena approved another payload
    assert (sent["amount"], sent["currency"]) == ("999999.00", "EUR")


def test_it_shows_each_approvals_digest_to_the_agent(vendor_payment, agent, lead, other_lead):
    services.approve(vendor_payment.pk, lead)
    services.approve(vendor_payment.pk, other_lead)

    body = api_client(agent).get(f"/api/v1/actions/{vendor_payment.pk}/").json()

    assert body["status"] == "approved"
    assert [d["payload_digest"] for d in body["decisions"]] == [payload_digest(vendor_payment.payload)] * 2


def test_it_sends_nothing_whose_payload_lacks_its_approvals(vendor_payment, lead, other_lead, receiver):
    services.approve(vendor_payment.pk, lead)
    services.approve(vendor_payment.pk, other_lead)
    # Written behind the services' back: a payload nobody approved.
    Action.objects.filter(pk=vendor_payment.pk).update(approved_payload=payment(5000, ACCOUNT_B))

    assert tasks.dispatch_action(str(vendor_payment.pk)) == executors.Outcome.FAILED

    assert receiver.requests == []
    execution = vendor_payment.executions.get()
    assert "has 0 of the 2 approvals it needs" in execution.error


def test_it_refuses_a_queue_row_approval_of_a_payload_edited_since_the_queue_was_read(
    vendor_payment, lead, other_lead, third_lead
):
    tara = LeadBrowser(third_lead)
    tara.open_queue()
    services.approve(vendor_payment.pk, lead, edited_payload=payment(250, ACCOUNT_B))

    response = tara.approve(vendor_payment, lane="pending")

    assert "The payload changed since you opened it" in html.unescape(response.content.decode())
    assert not vendor_payment.decisions.filter(user=third_lead).exists()


def test_it_refuses_a_bulk_approval_given_on_another_payload(agent, lead, department, receiver):
    action_type = webhook_type(receiver.url, slug="payments.small_refund", payload_schema=PAYMENT_SCHEMA)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    first, _ = services.propose(agent, action_type, payload=payment(20), reasoning="Damaged.")
    second, _ = services.propose(agent, action_type, payload=payment(30), reasoning="Damaged.")
    browser = LeadBrowser(lead)
    browser.open_queue()
    browser.digests[str(second.pk)] = payload_digest(payment(3000))  # a digest of something else

    text = html.unescape(browser.bulk_approve(first, second).content.decode())

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Status.APPROVED, Status.PENDING)
    assert "The payload changed since you opened it" in text


def test_it_refuses_an_edit_made_on_a_payload_another_lead_edited_since_and_keeps_the_text(
    vendor_payment, lead, other_lead
):
    lena = LeadBrowser(lead)
    lena.open(vendor_payment)
    services.approve(vendor_payment.pk, other_lead, edited_payload=payment(250, ACCOUNT_B))

    response = lena.approve(vendor_payment, payment(120, ACCOUNT_A, note="lena's correction"))

    text = html.unescape(response.content.decode())
    assert "The payload changed since you opened it" in text
    assert "lena's correction" in text  # her edit stays in the form, to redo on the new payload
    vendor_payment.refresh_from_db()
    assert vendor_payment.approved_payload == payment(250, ACCOUNT_B)
    assert not vendor_payment.decisions.filter(user=lead).exists()


def test_in_a_two_lead_department_the_first_approver_may_approve_the_edit(
    vendor_payment, lead, other_lead, receiver, client
):
    """Lena approved 100.00 to A; Omar edited it to B. Lena has not approved
    B, so she may: otherwise a department of two leads could never pass it."""
    lena, omar = LeadBrowser(lead), LeadBrowser(other_lead)
    action = vendor_payment
    lena.open(action)
    lena.approve(action)
    omar.open(action)
    edited = payment(250.00, ACCOUNT_B)
    omar.approve(action, edited)

    # Her queue row and the action page offer her the approval of the new payload.
    client.force_login(lead)
    page = client.get(f"/actions/{action.pk}/").content.decode()
    assert f"/actions/{action.pk}/approve/" in page
    assert "You approved" not in page

    lena.open(action)  # she reads 250.00 to account B
    lena.approve(action)
    action.refresh_from_db()
    assert action.status == Status.APPROVED
    approvals_of_b = action.decisions.filter(payload_digest=payload_digest(edited)).values_list("user", flat=True)
    assert sorted(approvals_of_b) == sorted([lead.pk, other_lead.pk])


def test_no_one_approves_the_same_payload_twice(vendor_payment, lead):
    services.approve(vendor_payment.pk, lead)
    with pytest.raises(services.DecisionRefused, match="already decided on this payload"):
        services.approve(vendor_payment.pk, lead)
    vendor_payment.refresh_from_db()
    assert (vendor_payment.status, vendor_payment.decisions.count()) == (Status.PENDING, 1)


def test_a_lead_who_approved_the_standing_payload_cannot_then_reject_it(vendor_payment, lead):
    services.approve(vendor_payment.pk, lead)
    with pytest.raises(services.DecisionRefused, match="already decided on this payload"):
        services.reject(vendor_payment.pk, lead, reason="Changed my mind.")
    vendor_payment.refresh_from_db()
    assert (vendor_payment.status, vendor_payment.decisions.count()) == (Status.PENDING, 1)


def test_a_lead_whose_approval_an_edit_made_stale_may_reject_the_edit(vendor_payment, lead, other_lead):
    services.approve(vendor_payment.pk, lead)
    services.approve(vendor_payment.pk, other_lead, edited_payload=payment(250.00, ACCOUNT_B))
    services.reject(vendor_payment.pk, lead, reason="Not to account B.")
    vendor_payment.refresh_from_db()
    assert vendor_payment.status == Status.REJECTED
