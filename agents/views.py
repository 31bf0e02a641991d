"""The agent pages: /agents/ and /agents/<slug>/, with the kill switch.

Thin, like the lead pages: reads here, changes through agents.services,
whose refusals the page shows. The switch works without JavaScript (post,
redirect, message); with htmx it answers with the switch, the status banner
and the status history of the page it came from.

Imports flow approvals → agents: what an agent page shows of actions and
departments is read through the agent's own relations.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents.access import is_admin, may_switch_off, visible_agents
from agents.models import Agent, AgentStatus
from agents.services import STATUS_VERBS, resume_agent, suspend_agent
from audit.log import Actor
from audit.models import AuditEvent

RECENT_ACTIONS = 20
STATUS_HISTORY = 10


def _get_visible_agent(user: Any, slug: str) -> Agent:
    """The agent, if the user may see it; else 404, so its existence stays private."""
    agent = visible_agents(user).select_related("owner", "department").filter(slug=slug).first()
    if agent is None:
        raise Http404("No such agent in your departments.")
    return agent


def _get_agent_to_switch(user: Any, slug: str) -> Agent:
    agent = _get_visible_agent(user, slug)
    if not may_switch_off(user, agent):
        raise PermissionDenied(f"Only the leads of {agent.department} or an admin may suspend or resume {agent.name}.")
    return agent


@login_required
def agent_list(request: HttpRequest) -> HttpResponse:
    agents = (
        visible_agents(request.user)
        .select_related("department", "owner")
        .annotate(grant_count=Count("grants"))
        .order_by("department__name", "name")
    )
    return render(request, "agents/list.html", {"agents": agents, "admin": is_admin(request.user)})


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
        "grants": agent.grants.select_related("action_type").order_by("action_type__slug"),
        "recent_actions": agent.actions.select_related("action_type").order_by("-created_at")[:RECENT_ACTIONS],
        # The action page opens only for the departments one decides for:
        # other rows are listed without a link that would lead to a 404.
        "openable_department_ids": _decider_department_ids(user),
        "can_switch": may_switch_off(user, agent),
        "status_history": history,
        "last_status_change": _last_change_to(agent.status, history),
    }
    context.update(extra)
    return context


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
    agent = _get_agent_to_switch(request.user, slug)
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
    agent = _get_agent_to_switch(request.user, slug)
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
