"""Agent reviews: a person looks at an agent every month or so and decides
to keep it, keep it with adjustments, or retire it.

`record_review` is the one way a review is written. Who may review is
approvals.reach's rule (an admin or a lead of the agent's department, never
its owner), asked by the page before it calls this. It records the
reviewer, notes and outcome, moves the next review date (a month on unless
the reviewer picks another), retires the agent when that is the outcome
(agents.services.set_status: a retired agent's proposals are blocked by the
policy) and writes the audit event, in one transaction.
"""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from agents import services
from agents.models import REVIEW_INTERVAL, Agent, AgentReview, AgentStatus, ReviewOutcome
from audit.log import Actor, record
from audit.people import Person


class ReviewRefused(ValueError):
    """The review cannot be recorded as asked; the message says why, in words for the reviewer."""


def overdue(agents: QuerySet[Agent], today: date | None = None) -> QuerySet[Agent]:
    """Agents still in service whose review date has passed, the longest overdue first."""
    today = today or timezone.localdate()
    return (
        agents.exclude(status=AgentStatus.RETIRED)
        .filter(next_review_on__lt=today)
        .select_related("department", "owner")
        .order_by("next_review_on", "name")
    )


@transaction.atomic
def record_review(
    agent: Agent,
    *,
    reviewer: Person,
    outcome: str,
    notes: str,
    next_review_on: date | None = None,
    today: date | None = None,
) -> AgentReview:
    today = today or timezone.localdate()
    if outcome not in ReviewOutcome.values:
        raise ReviewRefused(f"Choose an outcome: {', '.join(ReviewOutcome.labels).lower()}; not {outcome!r}.")
    if not notes.strip():
        raise ReviewRefused("Write what you looked at and why you decided so; the notes are kept with the review.")
    locked = Agent.objects.select_for_update().get(pk=agent.pk)
    if locked.status == AgentStatus.RETIRED:
        raise ReviewRefused("This agent is retired; it is not reviewed any more.")
    if outcome == ReviewOutcome.RETIRE:
        next_review_on = None
        services.set_status(
            locked, AgentStatus.RETIRED, actor=Actor.user(reviewer), reason=f"Retired at review: {notes}"
        )
    elif next_review_on is None:
        next_review_on = today + REVIEW_INTERVAL
    elif next_review_on <= today:
        raise ReviewRefused("The next review must be after today.")
    before = {"next_review_on": locked.next_review_on.isoformat() if locked.next_review_on else None}
    review = AgentReview.objects.create(
        agent=locked, reviewer=reviewer, outcome=outcome, notes=notes.strip(), next_review_on=next_review_on
    )
    Agent.objects.filter(pk=locked.pk).update(next_review_on=next_review_on)
    agent.next_review_on, agent.status = next_review_on, locked.status
    record(
        "agent.reviewed",
        locked,
        actor=Actor.user(reviewer),
        before=before,
        after={
            "outcome": outcome,
            "notes": review.notes,
            "next_review_on": next_review_on.isoformat() if next_review_on else None,
        },
        department_id=locked.department_id,
        agent_id=locked.pk,
    )
    return review
