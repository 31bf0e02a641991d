"""The action page's decision panel tells the whole story: every decision,
veto, shadow mark, dispatch, rollback request and rollback, with who, when
and why, oldest first; after a rollback too, and in the htmx answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Tier
from approvals import services
from approvals.models import Action, Decision, Execution, ExecutionKind, Executor
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, GrantFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


class StoryReader(HTMLParser):
    """The entries of the story list (<ol class="story">) inside the
    decision panel: (time, text) with the time from <time datetime>."""

    def __init__(self) -> None:
        super().__init__()
        self.in_panel = self.in_story = self.in_time = False
        self.entries: list[tuple[datetime, str]] = []
        self._at: datetime | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section" and attributes.get("id") == "decision-panel":
            self.in_panel = True
        elif self.in_panel and tag == "ol" and "story" in (attributes.get("class") or "").split():
            self.in_story = True
        elif self.in_story and tag == "li":
            self._at, self._text = None, []
        elif self.in_story and tag == "time":
            self.in_time = True
            self._at = datetime.fromisoformat(attributes["datetime"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "time":
            self.in_time = False
        elif self.in_story and tag == "li":
            assert self._at is not None, "every step says when it happened"
            self.entries.append((self._at, " ".join("".join(self._text).split())))
        elif tag == "ol":
            self.in_story = False
        elif tag == "section":
            self.in_panel = False

    def handle_data(self, data: str) -> None:
        if self.in_story and not self.in_time:
            self._text.append(data)


def story_in(html: str) -> list[tuple[datetime, str]]:
    reader = StoryReader()
    reader.feed(html)
    return reader.entries


def story_on_page(user, action: Action) -> list[tuple[datetime, str]]:
    client = Client()
    client.force_login(user)
    response = client.get(f"/actions/{action.pk}/")
    assert response.status_code == 200
    return story_in(response.content.decode())


def texts(story: list[tuple[datetime, str]]) -> list[str]:
    return [text for _, text in story]


def at(story: list[tuple[datetime, str]], text: str) -> datetime:
    return next(when for when, said in story if said == text)


@pytest.fixture
def succeeded(agent, lead, propose) -> Action:
    """Approved by lena-lead with a comment, carried out by its agent."""
    action = propose()
    services.approve(action.pk, lead, comment="Matches ticket SUP-4411.")
    return services.report_result(action.pk, agent, succeeded=True, undo={"refund_id": "R-5521"})


def test_after_a_rollback_the_panel_says_who_asked_for_it_when_and_why(lead, other_lead, agent, succeeded):
    services.request_rollback(succeeded.pk, other_lead, reason="Refunded the wrong order.")
    services.report_rollback(succeeded.pk, agent, succeeded=True)

    story = story_on_page(lead, succeeded)

    assert texts(story) == [
        "Refund Bot proposed it",
        f"Policy sent it to a lead: “{succeeded.verdict_reason}”",
        "lena-lead approved: “Matches ticket SUP-4411.”",
        "Refund Bot carried it out (attempt 1)",
        "omar-lead asked for a rollback: “Refunded the wrong order.”",
        "Refund Bot rolled it back (attempt 1)",
    ]
    requested = AuditEvent.objects.get(verb="action.rollback_requested")
    assert at(story, "omar-lead asked for a rollback: “Refunded the wrong order.”") == requested.created_at
    approval = Decision.objects.get(action=succeeded)
    assert at(story, "lena-lead approved: “Matches ticket SUP-4411.”") == approval.created_at
    assert [when for when, _ in story] == sorted(when for when, _ in story)


def test_a_failed_rollback_and_the_second_request_are_both_told(lead, other_lead, agent, succeeded):
    services.request_rollback(succeeded.pk, other_lead, reason="Refunded the wrong order.")
    services.report_rollback(succeeded.pk, agent, succeeded=False, detail="The refund was already paid out.")
    services.request_rollback(succeeded.pk, lead, reason="Paid out by mistake: claw it back.")
    services.report_rollback(succeeded.pk, agent, succeeded=True)

    assert texts(story_on_page(lead, succeeded))[-5:] == [
        "Refund Bot carried it out (attempt 1)",
        "omar-lead asked for a rollback: “Refunded the wrong order.”",
        "Refund Bot failed to roll it back (attempt 1): “The refund was already paid out.”",
        "lena-lead asked for a rollback: “Paid out by mistake: claw it back.”",
        "Refund Bot rolled it back (attempt 2)",
    ]


def test_a_veto_says_who_vetoed_when_and_why(lead, other_lead, agent):
    action_type = ActionTypeFactory(undo_window_seconds=600)
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.EXECUTOR)
    auto_approved, _ = services.propose(
        agent, action_type, payload={"note": "refund"}, reasoning="Charged twice.", confidence=Decimal("0.95")
    )
    services.veto(auto_approved.pk, other_lead, reason="Wrong customer: see SUP-4412.")

    story = story_on_page(lead, auto_approved)

    assert texts(story) == [
        "Refund Bot proposed it",
        f"Policy approved it: “{auto_approved.verdict_reason}”",
        "omar-lead vetoed: “Wrong customer: see SUP-4412.”",
    ]
    veto = Decision.objects.get(action=auto_approved)
    assert at(story, "omar-lead vetoed: “Wrong customer: see SUP-4412.”") == veto.created_at


def test_every_decision_and_shadow_mark_names_its_person_and_reason(lead, other_lead, propose):
    edited = propose()
    services.approve(edited.pk, lead, comment="Smaller refund.", edited_payload={"note": "half"})
    rejected = propose()
    services.reject(rejected.pk, other_lead, reason="Duplicate of an earlier request.")
    shadowed = propose(tier=Tier.OBSERVER)
    services.mark_shadow(shadowed.pk, lead, would_approve=True)
    services.mark_shadow(shadowed.pk, other_lead, would_approve=False, comment="Not for this customer.")

    assert "lena-lead edited the payload and approved: “Smaller refund.”" in texts(story_on_page(lead, edited))
    assert "omar-lead rejected: “Duplicate of an earlier request.”" in texts(story_on_page(lead, rejected))
    assert texts(story_on_page(lead, shadowed))[-2:] == [
        "lena-lead would have approved (shadow mark)",
        "omar-lead would have rejected (shadow mark): “Not for this customer.”",
    ]


def test_each_dispatch_attempt_is_told_with_its_error(lead, agent):
    action_type = ActionTypeFactory(
        slug="crm.update_lead_owner", executor=Executor.WEBHOOK, webhook_url="https://crm.example/hook"
    )
    GrantFactory(agent=agent, action_type=action_type)
    action, _ = services.propose(agent, action_type, payload={"note": "to Kim"}, reasoning="Kim owns the region.")
    services.approve(action.pk, lead)
    services.retry_later(services.start_dispatch(action.pk).pk, error="HTTP 503 from https://crm.example/hook")
    Execution.objects.filter(action=action).update(retry_at=timezone.now() - timedelta(seconds=1))
    services.finish_dispatch(services.retry_dispatch(action.pk).pk, succeeded=True)

    assert texts(story_on_page(lead, action))[-2:] == [
        "Countersign failed to carry it out, will retry (attempt 1): “HTTP 503 from https://crm.example/hook”",
        "Countersign carried it out (attempt 2)",
    ]
    assert Execution.objects.filter(action=action, kind=ExecutionKind.DISPATCH).count() == 2


def test_the_htmx_answer_to_a_rollback_request_carries_the_story(lead, succeeded):
    client = Client()
    client.force_login(lead)
    html = client.post(f"/actions/{succeeded.pk}/rollback/", {"reason": "Wrong order."}, **HTMX).content.decode()
    assert html.lstrip().startswith('<section id="decision-panel"')
    assert texts(story_in(html))[-2:] == [
        "lena-lead asked for a rollback: “Wrong order.”",
        "Refund Bot is rolling it back (attempt 1)",
    ]
