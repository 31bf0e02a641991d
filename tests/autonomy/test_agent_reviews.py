"""Agent reviews: who may review, what a review records, the next date, and
retiring (after which the agent's proposals are blocked)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents import reviews
from agents.models import Agent, AgentReview, AgentStatus, ReviewOutcome, Tier
from approvals.models import Verdict
from approvals.reach import reach_of
from audit.models import AuditEvent
from tests.support.factories import PASSWORD, AgentFactory, DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_lead_keeps_an_agent_and_its_next_review_is_a_month_on(agent, lead):
    review = reviews.record_review(agent, reviewer=lead, outcome=ReviewOutcome.KEEP, notes="Refunds look right.")

    today = timezone.localdate()
    assert (review.reviewer, review.outcome, review.notes) == (lead, "keep", "Refunds look right.")
    agent.refresh_from_db()
    assert agent.next_review_on == review.next_review_on == today + timedelta(days=30)
    assert agent.status == AgentStatus.ACTIVE
    event = AuditEvent.objects.get(verb="agent.reviewed")
    assert event.after == {
        "outcome": "keep",
        "notes": "Refunds look right.",
        "next_review_on": str(agent.next_review_on),
    }
    assert event.actor_label == "lena-lead"


def test_the_reviewer_may_set_another_date_but_not_a_past_one(agent, lead):
    in_a_week = timezone.localdate() + timedelta(days=7)
    reviews.record_review(agent, reviewer=lead, outcome="adjust", notes="Lowered its limit.", next_review_on=in_a_week)
    agent.refresh_from_db()
    assert agent.next_review_on == in_a_week

    with pytest.raises(reviews.ReviewRefused, match="after today"):
        reviews.record_review(agent, reviewer=lead, outcome="keep", notes="x", next_review_on=timezone.localdate())


def test_retiring_at_review_blocks_the_agents_proposals(agent, lead, propose):
    reviews.record_review(agent, reviewer=lead, outcome=ReviewOutcome.RETIRE, notes="Replaced by refund-bot-2.")

    agent.refresh_from_db()
    assert agent.status == AgentStatus.RETIRED and agent.next_review_on is None
    assert AuditEvent.objects.filter(verb="agent.retired", after__reason__startswith="Retired at review").exists()

    action = propose(tier=Tier.EXECUTOR)
    assert (action.verdict, action.verdict_code) == (Verdict.BLOCKED, "agent_suspended")
    assert action.verdict_reason == "The agent is retired; it may not propose actions."

    with pytest.raises(reviews.ReviewRefused, match="retired"):
        reviews.record_review(agent, reviewer=lead, outcome=ReviewOutcome.KEEP, notes="Back?")


@pytest.mark.parametrize(
    ("outcome", "notes", "message"),
    [
        ("promote", "Fine.", "Choose an outcome"),
        ("keep", "   ", "Write what you looked at"),
    ],
)
def test_a_review_needs_an_outcome_and_notes(agent, lead, outcome, notes, message):
    with pytest.raises(reviews.ReviewRefused, match=message):
        reviews.record_review(agent, reviewer=lead, outcome=outcome, notes=notes)
    assert not AgentReview.objects.exists()


def test_the_owner_and_other_departments_leads_may_not_review(client, agent, owner):
    stranger = UserFactory(username="sam-stranger")
    DepartmentFactory(slug="support", leads=[stranger])
    assert not reach_of(owner).reviews(agent) and not reach_of(stranger).reviews(agent)
    url = reverse("agent-reviews", args=[agent.slug])
    client.force_login(owner)
    response = client.post(url, {"outcome": "keep", "notes": "Mine is fine."})
    assert response.status_code == 400 and "Only an admin or a lead" in response.content.decode()
    client.force_login(stranger)
    assert client.post(url, {"outcome": "keep", "notes": "Looks fine."}).status_code == 404
    assert not AgentReview.objects.exists()


def test_an_owner_who_leads_the_department_still_may_not_review_their_own_agent(agent, lead):
    Agent.objects.filter(pk=agent.pk).update(owner=lead)
    agent.refresh_from_db()
    assert not reach_of(lead).reviews(agent)


# ---------------------------------------------------------------- pages


def logged_in(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_a_lead_records_a_review_on_the_agents_review_page(client, agent, lead):
    url = reverse("agent-reviews", args=[agent.slug])
    page = logged_in(client, lead).get(url).content.decode()
    assert "Record the review" in page and "Not reviewed yet." in page

    response = client.post(url, {"outcome": "adjust", "notes": "Tightened its daily limit."}, follow=True)

    assert response.redirect_chain[-1][0] == url
    page = response.content.decode()
    assert "Review of Refund Bot recorded." in page and "Tightened its daily limit." in page


def test_the_page_shows_a_refusal_and_keeps_what_was_typed(client, agent, lead):
    url = reverse("agent-reviews", args=[agent.slug])

    response = logged_in(client, lead).post(url, {"outcome": "keep", "notes": "Fine.", "next_review_on": "soon"})

    assert response.status_code == 400
    assert "is not a date; write it as YYYY-MM-DD." in response.content.decode()
    assert "Fine.</textarea>" in response.content.decode()


def test_the_owner_sees_the_reviews_but_no_form_and_strangers_get_404(client, agent, owner):
    url = reverse("agent-reviews", args=[agent.slug])
    page = logged_in(client, owner).get(url).content.decode()
    assert "Record the review" not in page and "Not reviewed yet." in page

    stranger = UserFactory(username="sam-stranger")
    assert logged_in(client, stranger).get(url).status_code == 404


def test_the_reviews_page_lists_overdue_and_upcoming_reviews(client, agent, lead):
    today = timezone.localdate()
    Agent.objects.filter(pk=agent.pk).update(next_review_on=today - timedelta(days=3))
    AgentFactory(slug="soon-bot", department=agent.department, next_review_on=today + timedelta(days=5))
    AgentFactory(
        slug="old-bot", department=agent.department, status="retired", next_review_on=today - timedelta(days=9)
    )

    page = logged_in(client, lead).get(reverse("reviews-due")).content.decode()

    overdue, upcoming = page.split("Due in the next 14 days")
    assert "Refund Bot" in overdue and "Soon Bot" not in overdue and "Old Bot" not in page
    assert "Soon Bot" in upcoming
