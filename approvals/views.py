"""Lead-facing pages. Thin: they read through querysets and change nothing
except through approvals.services."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from approvals.models import Action, Department
from audit.models import AuditEvent

QUEUE_PAGE_SIZE = 50


def _department_ids(user) -> list[int]:
    """Departments whose actions this user may see: led, or backed up."""
    return list(
        Department.objects.filter(Q(leads=user) | Q(backup_approvers=user)).values_list("pk", flat=True).distinct()
    )


def _get_visible_action(user, action_id) -> Action:
    action = (
        Action.objects.select_related("agent", "action_type", "department")
        .filter(pk=action_id, department_id__in=_department_ids(user))
        .first()
    )
    if action is None:
        raise Http404("No such action in your departments.")
    return action


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    department_ids = _department_ids(request.user)
    pending = (
        Action.objects.pending()
        .for_departments(department_ids)
        .select_related("agent", "action_type", "department")
        .order_by("-priority", "created_at")
    )
    page = Paginator(pending, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "departments": Department.objects.filter(pk__in=department_ids),
    }
    template = "approvals/queue.html#queue-table" if request.htmx else "approvals/queue.html"
    return render(request, template, context)


@login_required
def action_detail(request: HttpRequest, action_id) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    return render(
        request,
        "approvals/action_detail.html",
        {
            "action": action,
            "decisions": action.decisions.select_related("user"),
            "executions": action.executions.all(),
            "events": AuditEvent.objects.for_object(action).order_by("id"),
        },
    )
