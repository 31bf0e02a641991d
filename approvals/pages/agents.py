"""The agent pages: /agents/ and /agents/<slug>/, with the kill switch and
earned autonomy (each grant's record, tier history, evaluation on demand and
the one-click promotion a recommend-only policy offers).

They live in approvals, not agents, because they show approvals' records
(imports flow approvals → agents). Thin, like the lead pages: reads here,
changes through agents.services and approvals.autonomy.trust, whose refusals the page
shows. Every form works without JavaScript (post, redirect, message); with
htmx the kill switch answers with the switch, the status banner and the status
history, and the trust forms with the grants and the tier history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents.models import Agent, AgentStatus
from agents.services import STATUS_VERBS, resume_agent, suspend_agent
from approvals.autonomy import metrics, trust
from approvals.models import PromotionPolicy
from approvals.pages.answers import answer
from approvals.pages.requests import PageRequest
from approvals.reach import Reach, reach_of
from approvals.reads import charts
from audit.log import Actor
from audit.models import AuditEvent
from audit.people import Person

RECENT_ACTIONS = 20
STATUS_HISTORY = 10
CHART_DAYS = 30


def _get_visible_agent(reach: Reach, slug: str) -> Agent:
    """The agent, if the user may see it (approvals.reach); else 404, so its existence stays private."""
    agent = reach.agents_seen().select_related("owner", "department").filter(slug=slug).first()
    if agent is None:
        raise Http404("No such agent among those you see.")
    return agent


def _get_agent_to(may: Callable[[Reach, Agent], bool], user: Person, slug: str) -> Agent:
    """The agent, if the user may do this to it (`may`: Reach.suspends,
    Reach.resumes or Reach.manages_tiers); 403 when they see it but may not,
    404 when they do not see it."""
    reach = reach_of(user)
    agent = _get_visible_agent(reach, slug)
    if not may(reach, agent):
        raise PermissionDenied(_NOT_YOURS_TO[may].format(agent=agent))
    return agent


_NOT_YOURS_TO: dict[Callable[[Reach, Agent], bool], str] = {
    Reach.suspends: "Only the leads of {agent.department} or an admin may suspend {agent.name}.",
    Reach.resumes: "Only the leads of {agent.department} or an admin may resume {agent.name}; "
    "its owner only when they suspended it themselves.",
    Reach.manages_tiers: "Only the leads of {agent.department} or an admin, not its owner, may move its tiers.",
}


@login_required
def agent_list(request: PageRequest) -> HttpResponse:
    reach = reach_of(request.user)
    agents = list(
        reach.agents_seen()
        .select_related("department", "owner")
        .annotate(grant_count=Count("grants"))
        .order_by("department__name", "name")
    )
    policy_of = PromotionPolicy.by_department()
    records = metrics.for_agents_over_their_windows(
        [(a.pk, a.department_id) for a in agents], timezone.now(), policy_of
    )
    for agent in agents:
        vars(agent)["record"] = records[agent.pk]  # for the template; no model field declares it
        vars(agent)["window_days"] = policy_of(agent.department_id).window_days
    context = {"agents": agents, "admin": reach.admin}
    return render(request, "agents/list.html", context)


@login_required
def agent_detail(request: PageRequest, slug: str) -> HttpResponse:
    agent = _get_visible_agent(reach_of(request.user), slug)
    return render(request, "agents/detail.html", _agent_context(request, agent))


def _agent_context(request: PageRequest, agent: Agent, **extra: Any) -> dict[str, Any]:
    reach = reach_of(request.user)
    history = list(
        AuditEvent.objects.for_object(agent).filter(verb__in=STATUS_VERBS.values()).order_by("-id")[:STATUS_HISTORY]
    )
    context = {
        "agent": agent,
        # Only the actions this user sees (approvals.reach), each a link to its page.
        "recent_actions": reach.actions_seen()
        .filter(agent=agent)
        .select_related("action_type")
        .order_by("-created_at")[:RECENT_ACTIONS],
        **_may(reach, agent),
        "status_history": history,
        "last_status_change": _last_change_to(agent.status, history),
        "chart": charts.volume_and_rate(metrics.daily(agent.actions.all(), CHART_DAYS)),
        **_trust_context(agent),
    }
    context.update(extra)
    return context


def _trust_context(agent: Agent) -> dict[str, Any]:
    return {
        "grants": trust.assess_grants(agent.grants.all()),
        "policy": PromotionPolicy.for_department(agent.department),
        "tier_history": trust.tier_history(agent),
    }


def _may(reach: Reach, agent: Agent) -> dict[str, bool]:
    """What the page offers this user: the switch (suspend, resume) and the trust forms."""
    return {
        "can_suspend": reach.suspends(agent),
        "can_resume": reach.resumes(agent),
        "can_switch": reach.suspends(agent) if agent.status == AgentStatus.ACTIVE else reach.resumes(agent),
        "can_manage_tiers": reach.manages_tiers(agent),
    }


def _last_change_to(status: str, history: list[AuditEvent]) -> AuditEvent | None:
    """The event that put the agent in its current status: who, when and why, for the banner."""
    verb = STATUS_VERBS[AgentStatus(status)]
    return next((event for event in history if event.verb == verb), None)


# ---------------------------------------------------------------- the kill switch


@login_required
@require_POST
def suspend(request: PageRequest, slug: str) -> HttpResponse:
    """One click: the reason is optional here, because stopping must never wait on typing."""
    agent = _get_agent_to(Reach.suspends, request.user, slug)
    if agent.status == AgentStatus.SUSPENDED:
        return _answer(request, agent, f"{agent.name} is already suspended.", messages.INFO)
    reason = request.POST.get("reason", "").strip() or f"Stopped from the agent page by {request.user.get_username()}"
    try:
        suspend_agent(agent, actor=Actor.user(request.user), reason=reason)
    except ValueError as error:  # a retired agent stays retired
        return _answer(request, agent, str(error), messages.ERROR)
    return _answer(
        request,
        agent,
        f"{agent.name} is suspended: its new proposals are refused and none of its actions is dispatched.",
    )


@login_required
@require_POST
def resume(request: PageRequest, slug: str) -> HttpResponse:
    """Resuming is an explicit act: it needs a reason."""
    agent = _get_agent_to(Reach.resumes, request.user, slug)
    if agent.status == AgentStatus.ACTIVE:
        return _answer(request, agent, f"{agent.name} is already active.", messages.INFO)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        return _answer(request, agent, f"Say why it is safe to resume {agent.name}.", messages.ERROR)
    try:
        resume_agent(agent, actor=Actor.user(request.user), reason=reason)
    except ValueError as error:
        return _answer(request, agent, str(error), messages.ERROR)
    return _answer(request, agent, f"{agent.name} is active again: the policy evaluates its proposals.")


def _answer(request: PageRequest, agent: Agent, text: str, level: int = messages.SUCCESS) -> HttpResponse:
    """With htmx, the switch and what it changed on the page; else a redirect to the page."""

    def switch() -> dict[str, Any]:
        agent.refresh_from_db(fields=["status", "suspended_by"])
        return _agent_context(request, agent)

    return answer(
        request,
        text,
        level,
        redirect_to=reverse("agent-detail", args=[agent.slug]),
        fragment="agents/detail.html#switch-update",
        context=switch,
    )


# ---------------------------------------------------------------- earned autonomy


@login_required
@require_POST
def evaluate(request: PageRequest, slug: str) -> HttpResponse:
    """Run the trust evaluation for this agent's grants now, as the hourly job would."""
    agent = _get_agent_to(Reach.manages_tiers, request.user, slug)
    changes = trust.evaluate(agent.grants.all(), by=request.user)
    if changes:
        moved = "; ".join(f"{c.grant.action_type.slug} {c.from_tier} → {c.to_tier}" for c in changes)
        return _trust_answer(request, agent, f"Evaluated {agent.name}: {moved}.")
    return _trust_answer(request, agent, f"Evaluated {agent.name}: no tier changes.", messages.INFO)


@login_required
@require_POST
def promote(request: PageRequest, slug: str, grant_id: int) -> HttpResponse:
    """The one click on a promotion the evaluation recommends (recommend-only policies)."""
    agent = _get_agent_to(Reach.manages_tiers, request.user, slug)
    grant = agent.grants.select_related("action_type").filter(pk=grant_id).first()
    if grant is None:
        raise Http404(f"{agent.name} has no such grant.")
    try:
        change = trust.promote_on_recommendation(grant, request.user)
    except trust.NotRecommended as refused:
        return _trust_answer(request, agent, str(refused), messages.ERROR)
    return _trust_answer(request, agent, f"{grant.action_type.slug} is now {change.to_tier}.")


def _trust_answer(request: PageRequest, agent: Agent, text: str, level: int = messages.SUCCESS) -> HttpResponse:
    """With htmx, the grants and the tier history; else a redirect to the page."""
    return answer(
        request,
        text,
        level,
        redirect_to=reverse("agent-detail", args=[agent.slug]),
        fragment="agents/detail.html#trust-update",
        context=lambda: {"agent": agent, **_may(reach_of(request.user), agent), **_trust_context(agent)},
    )
