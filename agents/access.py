"""Who may see an agent's page and who may switch an agent off.

Admins (staff or superusers) see and stop every agent. A department's leads
see and stop its agents. An owner sees the agents they are responsible for
but does not stop them: stopping is the leads' and admins' call.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from agents.models import Agent


def is_admin(user: Any) -> bool:
    return bool(user.is_staff or user.is_superuser)


def visible_agents(user: Any) -> QuerySet[Agent]:
    if is_admin(user):
        return Agent.objects.all()
    # A subquery rather than a join on the leads: no duplicate rows to undo.
    led = user.led_departments.values("pk")
    return Agent.objects.filter(Q(department__in=led) | Q(owner=user))


def may_switch_off(user: Any, agent: Agent) -> bool:
    """May suspend and resume `agent`: an admin or a lead of its department."""
    return is_admin(user) or agent.department.leads.filter(pk=user.pk).exists()
