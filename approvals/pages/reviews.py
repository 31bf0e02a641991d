"""Agent reviews in the browser: one agent's reviews with the form to record
the next (/agents/<slug>/reviews/), and the reviews due (/reviews/).
The rules live in agents.reviews; these pages show its refusals."""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from agents import reviews
from agents.models import REVIEW_INTERVAL, Agent, AgentStatus, ReviewOutcome
from approvals.pages.requests import PageRequest
from approvals.reach import Reach, reach_of

UPCOMING = timedelta(days=14)


def _get_visible_agent(reach: Reach, slug: str) -> Agent:
    agent = reach.agents_seen().select_related("department", "owner").filter(slug=slug).first()
    if agent is None:
        raise Http404("No such agent among yours.")
    return agent


def _next_review_date(text: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError as error:
        raise reviews.ReviewRefused(f"{text!r} is not a date; write it as YYYY-MM-DD.") from error


@login_required
def agent_reviews(request: PageRequest, slug: str) -> HttpResponse:
    reach = reach_of(request.user)
    agent = _get_visible_agent(reach, slug)
    status = 200
    if request.method == "POST":
        try:
            if not reach.reviews(agent):
                raise reviews.ReviewRefused(
                    "Only an admin or a lead of the agent's department, not its owner, may review it."
                )
            reviews.record_review(
                agent,
                reviewer=request.user,
                outcome=request.POST.get("outcome", ""),
                notes=request.POST.get("notes", ""),
                next_review_on=_next_review_date(request.POST.get("next_review_on", "")),
            )
        except reviews.ReviewRefused as error:
            messages.error(request, str(error))
            status = 400
        else:
            messages.success(request, f"Review of {agent.name} recorded.")
            return redirect("agent-reviews", slug=agent.slug)
    today = timezone.localdate()
    context = {
        "agent": agent,
        "reviews": agent.reviews.select_related("reviewer"),
        "may_review": reach.reviews(agent) and agent.status != AgentStatus.RETIRED,
        "outcomes": ReviewOutcome.choices,
        "overdue": agent.next_review_on is not None and agent.next_review_on < today,
        "default_next": today + REVIEW_INTERVAL,
        "posted": request.POST if status == 400 else {},
    }
    return render(request, "approvals/agent_reviews.html", context, status=status)


@login_required
def reviews_due(request: PageRequest) -> HttpResponse:
    today = timezone.localdate()
    agents = reach_of(request.user).agents_seen()
    upcoming = (
        agents.exclude(status=AgentStatus.RETIRED)
        .filter(next_review_on__gte=today, next_review_on__lte=today + UPCOMING)
        .select_related("department", "owner")
        .order_by("next_review_on", "name")
    )
    context = {"overdue": reviews.overdue(agents, today), "upcoming": upcoming, "upcoming_days": UPCOMING.days}
    return render(request, "approvals/reviews_due.html", context)
