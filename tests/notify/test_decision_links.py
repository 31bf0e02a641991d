"""One-click decisions by email (approvals/notify/decision_links.py): the lead's
new-item email carries approve and reject links; a link opens a confirm page
with the preview (a GET changes nothing); confirming decides through
approvals.services as the browser does, once. Every refused link (used,
expired, past the action's expiry, stale, forwarded, the owner's, a lead no
longer of the department, the second approver rule, already decided) gets a
clear page and changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.models import Action, ActionType, Decision, DecisionLink, NotificationMode, Risk
from approvals.notify import decision_links
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, GrantFactory, UserFactory

pytestmark = pytest.mark.usefixtures("eager_tasks")

SITE = "https://countersign.example.com"


@pytest.fixture(autouse=True)
def _site(settings: Any) -> None:
    settings.SITE_URL = SITE


@pytest.fixture
def refunds(agent: Any) -> ActionType:
    action_type = ActionTypeFactory(slug="payments.refund", name="Refund a payment", risk=Risk.LOW)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


@pytest.fixture
def critical(agent: Any) -> ActionType:
    action_type = ActionTypeFactory(slug="payments.wire", name="Wire money", risk=Risk.CRITICAL)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


@pytest.fixture
def proposed(agent: Any, django_capture_on_commit_callbacks: Any) -> Callable[[ActionType], Action]:
    """Propose and commit: routed, and the leads emailed (tasks run eagerly)."""

    def _propose(action_type: ActionType) -> Action:
        with django_capture_on_commit_callbacks(execute=True):
            action, _ = services.propose(
                agent,
                action_type,
                payload={"note": "order 1001"},
                reasoning="Never arrived.",
                confidence=Decimal("0.95"),
            )
        return Action.objects.get(pk=action.pk)

    return _propose


def _links_in(body: str) -> dict[str, str]:
    found = dict(re.findall(r"^(Approve|Reject):\s+(\S+)$", body, re.MULTILINE))
    return {verdict.lower(): url.removeprefix(SITE) for verdict, url in found.items()}


def _email_to(mailoutbox: list[Any], user: Any) -> Any:
    [message] = [m for m in mailoutbox if m.to == [user.email]]
    return message


def _client(user: Any | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _state(action: Action) -> tuple[Any, ...]:
    """All a refused link must leave as it was."""
    fresh = Action.objects.get(pk=action.pk)
    return (
        fresh.status,
        fresh.standing_digest,
        Decision.objects.filter(action=action).count(),
        DecisionLink.objects.filter(action=action, used_at__isnull=False).count(),
        AuditEvent.objects.count(),
    )


# ---------------------------------------------------------------- end to end


def test_a_lead_approves_from_the_email_after_confirming_and_the_link_then_is_spent(
    proposed, refunds, lead, other_lead, owner, department, mailoutbox
):
    department.leads.add(owner)  # the owner leads too, and is emailed, but gets no links
    action = proposed(refunds)

    message = _email_to(mailoutbox, lead)
    links = _links_in(message.body)
    assert set(links) == {"approve", "reject"}
    assert "order 1001" in message.body  # the preview, as text
    html = message.alternatives[0][0]
    assert "order 1001" in html and f'href="{SITE}{links["approve"]}"' in html
    assert _links_in(_email_to(mailoutbox, other_lead).body)["approve"] != links["approve"]  # each lead their own
    assert _links_in(_email_to(mailoutbox, owner).body) == {}

    client = _client(lead)
    before = _state(action)
    anonymous = _client(None).get(links["approve"])
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=/decide/")
    page = client.get(links["approve"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Approve Refund a payment by" in html and "order 1001" in html and "csrfmiddlewaretoken" in html
    assert _state(action) == before  # opening the link changed nothing

    answer = client.post(links["approve"])

    assert answer.status_code == 302 and answer["Location"] == f"/actions/{action.pk}/"
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED
    event = AuditEvent.objects.get(verb="action.approved", object_id=str(action.pk))
    assert event.actor_label == lead.get_username()
    assert event.context["door"] == "email"
    assert DecisionLink.objects.get(action=action, lead=lead, verdict="approve").used_at is not None

    again = client.post(links["approve"])
    assert again.status_code == 410 and 'data-refusal="used"' in again.content.decode()


def test_a_lead_rejects_from_the_email_with_a_reason_and_not_without(proposed, refunds, lead, mailoutbox):
    action = proposed(refunds)
    reject = _links_in(_email_to(mailoutbox, lead).body)["reject"]
    client = _client(lead)
    before = _state(action)

    empty = client.post(reject, {"reason": "  "})
    assert empty.status_code == 422 and "Say why you reject it" in empty.content.decode()
    assert _state(action) == before

    client.post(reject, {"reason": "Duplicate of order 1000."})
    action.refresh_from_db()
    assert action.status == Status.REJECTED
    assert Decision.objects.get(action=action).comment == "Duplicate of order 1000."


def test_the_digest_lists_each_item_with_the_leads_own_links(
    proposed, refunds, lead, other_lead, mailoutbox, django_capture_on_commit_callbacks
):
    services.set_notification_mode(lead, NotificationMode.HOURLY)
    services.set_notification_mode(other_lead, NotificationMode.OFF)
    action = proposed(refunds)
    from approvals.notify import emails as notifications

    notifications.send_digests(now=timezone.now() + timedelta(minutes=2))

    links = _links_in(re.sub(r"^\s+", "", _email_to(mailoutbox, lead).body, flags=re.MULTILINE))
    assert set(links) == {"approve", "reject"}
    _client(lead).post(links["approve"])
    assert Action.objects.get(pk=action.pk).status == Status.APPROVED


def test_a_link_never_outlives_the_action(refunds, lead, agent, settings):
    settings.DECISION_LINK_MAX_AGE_MINUTES = 7 * 24 * 60
    action, _ = services.propose(agent, refunds, payload={"note": "x"}, reasoning="r", confidence=Decimal("0.9"))
    link = decision_links.issue(action, lead, decision_links.APPROVE)
    assert action.expires_at is not None and link.expires_at == action.expires_at


# ---------------------------------------------------------------- every refusal changes nothing


def _used(world: dict[str, Any]) -> None:
    # A critical action: the link's approval is recorded, the action still waits; the link is spent.
    _client(world["lead"]).post(world["path"])


def _expired(world: dict[str, Any]) -> None:
    DecisionLink.objects.filter(pk=world["link"].pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def _signature_too_old(world: dict[str, Any]) -> None:
    world["settings"].DECISION_LINK_MAX_AGE_MINUTES = -1


def _past_the_actions_expiry(world: dict[str, Any]) -> None:
    Action.objects.filter(pk=world["action"].pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def _stale(world: dict[str, Any]) -> None:
    services.approve(world["action"].pk, world["other_lead"], edited_payload={"note": "order 2002"})


def _owner_now(world: dict[str, Any]) -> None:
    world["agent"].owner = world["lead"]
    world["agent"].save()


def _no_longer_a_lead(world: dict[str, Any]) -> None:
    world["department"].leads.remove(world["lead"])


def _approved_in_the_browser_already(world: dict[str, Any]) -> None:
    services.approve(world["action"].pk, world["lead"])


def _decided_by_another(world: dict[str, Any]) -> None:
    services.reject(world["action"].pk, world["other_lead"], reason="No.")


REFUSALS = {
    # case: (what happens after the email went, who opens the link, refusal shown)
    "used": (_used, "lead", "used"),
    "expired": (_expired, "lead", "expired"),
    "signature older than the maximum age": (_signature_too_old, "lead", "expired"),
    "past the action's expiry": (_past_the_actions_expiry, "lead", "action_expired"),
    "stale: the payload was edited since": (_stale, "lead", "stale"),
    "forwarded: opened by another lead": (lambda world: None, "other_lead", "forwarded"),
    "forwarded: opened by someone outside": (lambda world: None, "stranger", "forwarded"),
    "the lead now owns the agent": (_owner_now, "lead", "owner"),
    "the lead left the department": (_no_longer_a_lead, "lead", "reach"),
    "second approver: already approved this payload": (_approved_in_the_browser_already, "lead", "second_approver"),
    "already decided": (_decided_by_another, "lead", "decided"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_link_shows_why_and_changes_nothing(case, critical, agent, lead, other_lead, department, settings):
    action, _ = services.propose(
        agent, critical, payload={"note": "order 1001"}, reasoning="r", confidence=Decimal("0.9")
    )
    link = decision_links.issue(action, lead, decision_links.APPROVE)
    world = {
        "action": action,
        "link": link,
        "path": decision_links.path_of(link),
        "lead": lead,
        "other_lead": other_lead,
        "stranger": UserFactory(username="sam-stranger"),
        "agent": agent,
        "department": department,
        "settings": settings,
    }
    arrange, who, code = REFUSALS[case]
    with transaction.atomic():
        arrange(world)
    client = _client(world[who])  # logging in is an audit event of its own
    before = _state(action)

    shown = client.get(world["path"])
    posted = client.post(world["path"], {"reason": "x"})

    for response in (shown, posted):
        assert response.status_code in (403, 409, 410), (case, response.status_code)
        assert f'data-refusal="{code}"' in response.content.decode(), case
        assert "Nothing was changed." in response.content.decode()
    assert _state(action) == before, case


def test_a_forged_or_mangled_link_is_not_valid(critical, agent, lead):
    action, _ = services.propose(agent, critical, payload={"note": "x"}, reasoning="r", confidence=Decimal("0.9"))
    token = decision_links.token_of(decision_links.issue(action, lead, decision_links.APPROVE))
    client = _client(lead)
    for forged in (token[:-2] + "xy", token.replace(":", ".", 1), "nonsense"):
        response = client.get(f"/decide/{forged}/")
        assert response.status_code == 404 and 'data-refusal="invalid"' in response.content.decode()
