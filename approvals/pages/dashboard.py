"""The department dashboard: /dashboard/ picks a department, and
/departments/<slug>/ shows it: what waits now, how fast it is decided, the
approvals and rejections per day, the agents near a tier change, and how
each approver decides (approvals.reads.analytics).

Who sees which department is approvals.reach's rule: its members (leads
and backups) and admins; anyone else gets a 404, so a department's existence
stays private.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from agents.models import AgentStatus, Grant
from approvals.autonomy import metrics, trust
from approvals.models import Action, Department, PromotionPolicy
from approvals.pages.requests import PageRequest
from approvals.reach import reach_of
from approvals.reads import analytics, charts
from audit.people import Person

CHART_DAYS = 30


def _visible_departments(user: Person) -> QuerySet[Department]:
    return reach_of(user).departments_seen()


@login_required
def dashboard_index(request: PageRequest) -> HttpResponse:
    departments = list(_visible_departments(request.user).order_by("name"))
    if len(departments) == 1:
        return redirect("department-dashboard", departments[0].slug)
    return render(request, "approvals/dashboard_index.html", {"departments": departments})


@login_required
def department_dashboard(request: PageRequest, slug: str) -> HttpResponse:
    reach = reach_of(request.user)
    department = reach.departments_seen().filter(slug=slug).first()
    if department is None:
        raise Http404("No such department among yours.")
    policy = PromotionPolicy.for_department(department)
    since = policy.window_start(timezone.now())
    actions = Action.objects.filter(department=department)
    days = metrics.daily(actions, CHART_DAYS)
    grants = Grant.objects.filter(agent__department=department).exclude(agent__status=AgentStatus.RETIRED)
    near = [evaluated for evaluated in trust.assess_grants(grants) if evaluated.assessment.near_a_change]
    context = {
        "department": department,
        "policy": policy,
        "pending": actions.pending().count(),
        "record": metrics.for_departments([department.pk], since)[department.pk],
        "chart": charts.decisions_per_day(days),
        "chart_days": CHART_DAYS,
        "near": near,
        "approvers": analytics.approvers(department, timezone.now() - timedelta(days=CHART_DAYS)),
        "analytics": analytics,
        "can_simulate": reach.admin or department.pk in reach.led_ids,  # approvals.pages.simulator's rule
    }
    return render(request, "approvals/department_dashboard.html", context)
