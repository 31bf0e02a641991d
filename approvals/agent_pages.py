"""The agent pages: /agents/ and /agents/<slug>/, with the kill switch and
earned autonomy (each grant's record, tier history, evaluation on demand and
the one-click promotion a recommend-only policy offers).

They live in approvals, not agents, because they show approvals' records
(imports flow approvals → agents). Thin, like the lead pages: reads here,
changes through agents.services and approvals.trust, whose refusals the page
shows. Every form works without JavaScript (post, redirect, message); with
htmx the kill switch answers with the switch, the status banner and the status
history, and the trust forms with the grants and the tier history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents.access import is_admin, may_switch_off, visible_agents
from agents.models import Agent, AgentStatus
from agents.services import STATUS_VERBS, resume_agent, suspend_agent
from approvals import charts, metrics, trust
from approvals.models import PromotionPolicy
from audit.log import Actor
from audit.models import AuditEvent

RECENT_ACTIONS = 20
STATUS_HISTORY = 10
CHART_DAYS = 30


def _get_visible_agent(user: Any, slug: str) -> Agent:
    """The agent, if the user may see it; else 404, so its existence stays private."""
    agent = visible_agents(user).select_related("owner", "department").filter(slug=slug).first()
    if agent is None:
        raise Http404("No such agent in your departments.")
    return agent


def _get_agent_to_manage(user: Any, slug: str) -> Agent:
    """The agent, if the user may switch it off or move its tiers: a lead of its department or an admin."""
    agent = _get_visible_agent(user, slug)
    if not may_switch_off(user, agent):
        raise PermissionDenied(f"Only the leads of {agent.department} or an admin may do this for {agent.name}.")
    return agent


@login_required
def agent_list(request: HttpRequest) -> HttpResponse:
    agents = list(
        visible_agents(request.user)
        .select_related("department", "owner")
        .annotate(grant_count=Count("grants"))
        .order_by("department__name", "name")
    )
    window = PromotionPolicy.for_department(None).window_days
    records = metrics.for_agents([a.pk for a in agents], timezone.now() - timedelta(days=window))
    for agent in agents:
        agent.record = records[agent.pk]
    context = {"agents": agents, "admin": is_admin(request.user), "window_days": window}
    return render(request, "agents/list.html", context)


@login_required
def agent_detail(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _get_visible_agent(request.user, slug)
    return render(request, "agents/detail.html", _agent_context(request, agent))


def _agent_context(request: HttpRequest, agent: Agent, **extra: Any) -> dict[str, Any]:
    user = request.user
    history = list(
        AuditEvent.objects.for_object(agent).filter(verb__in=STATUS_VERBS.values()).order_by("-id")[:STATUS_HISTORY]
    )
    context = {
        "agent": agent,
        "recent_actions": agent.actions.select_related("action_type").order_by("-created_at")[:RECENT_ACTIONS],
        # The action page opens only for the departments one decides for:
        # other rows are listed without a link that would lead to a 404.
        "openable_department_ids": _decider_department_ids(user),
        "can_switch": may_switch_off(user, agent),
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


def _decider_department_ids(user: Any) -> set[int]:
    led = user.led_departments.values_list("pk", flat=True)
    backed_up = user.backup_departments.values_list("pk", flat=True)
    return set(led) | set(backed_up)


def _last_change_to(status: str, history: list[AuditEvent]) -> AuditEvent | None:
    """The event that put the agent in its current status: who, when and why, for the banner."""
    verb = STATUS_VERBS[AgentStatus(status)]
    return next((event for event in history if event.verb == verb), None)


# ---------------------------------------------------------------- the kill switch


@login_required
@require_POST
def suspend(request: HttpRequest, slug: str) -> HttpResponse:
    """One click: the reason is optional here, because stopping must never wait on typing."""
    agent = _get_agent_to_manage(request.user, slug)
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
def resume(request: HttpRequest, slug: str) -> HttpResponse:
    """Resuming is an explicit act: it needs a reason."""
    agent = _get_agent_to_manage(request.user, slug)
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


def _answer(request: HttpRequest, agent: Agent, text: str, level: int = messages.SUCCESS) -> HttpResponse:
    """With htmx, the switch and what it changed on the page; else a redirect to the page."""
    if not request.htmx:
        messages.add_message(request, level, text)
        return redirect("agent-detail", agent.slug)
    agent.refresh_from_db(fields=["status"])
    flash = {"text": text, "level": messages.DEFAULT_TAGS[level]}
    return render(request, "agents/detail.html#switch-update", _agent_context(request, agent, flash=flash))


# ---------------------------------------------------------------- earned autonomy


@login_required
@require_POST
def evaluate(request: HttpRequest, slug: str) -> HttpResponse:
    """Run the trust evaluation for this agent's grants now, as the hourly job would."""
    agent = _get_agent_to_manage(request.user, slug)
    changes = trust.evaluate(agent.grants.all(), by=request.user)
    if changes:
        moved = "; ".join(f"{c.grant.action_type.slug} {c.from_tier} → {c.to_tier}" for c in changes)
        return _trust_answer(request, agent, f"Evaluated {agent.name}: {moved}.")
    return _trust_answer(request, agent, f"Evaluated {agent.name}: no tier changes.", messages.INFO)


@login_required
@require_POST
def promote(request: HttpRequest, slug: str, grant_id: int) -> HttpResponse:
    """The one click on a promotion the evaluation recommends (recommend-only policies)."""
    agent = _get_agent_to_manage(request.user, slug)
    grant = agent.grants.select_related("action_type").filter(pk=grant_id).first()
    if grant is None:
        raise Http404(f"{agent.name} has no such grant.")
    try:
        change = trust.promote_on_recommendation(grant, request.user)
    except trust.NotRecommended as refused:
        return _trust_answer(request, agent, str(refused), messages.ERROR)
    return _trust_answer(request, agent, f"{grant.action_type.slug} is now {change.to_tier}.")


def _trust_answer(request: HttpRequest, agent: Agent, text: str, level: int = messages.SUCCESS) -> HttpResponse:
    """With htmx, the grants and the tier history; else a redirect to the page."""
    if not request.htmx:
        messages.add_message(request, level, text)
        return redirect("agent-detail", agent.slug)
    flash = {"text": text, "level": messages.DEFAULT_TAGS[level]}
    context = {
        "agent": agent,
        "can_switch": may_switch_off(request.user, agent),
        "flash": flash,
        **_trust_context(agent),
    }
    return render(request, "agents/detail.html#trust-update", context)
