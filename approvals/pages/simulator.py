"""The policy simulator's page: /simulator/ (docs/simulator.md).

An admin or a department's lead picks one change (a grant's tier and limits,
an action type's risk, a promotion policy) and sees what it would have done
over the recorded proposals of the last days, as a table and a chart
(approvals.replay). Who may simulate what is approvals.reach's rule: an
admin everything; a lead the grants and the policy of the departments they
lead, and an action type's risk over those departments' grants only.
Anything else is a 404, so it never tells what exists elsewhere.

With htmx the form swaps the result in place; without it, it posts and the
page comes back with the result.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render

from agents.models import Grant, Tier
from approvals.models import ActionType, Department, PromotionPolicy, Risk
from approvals.pages.requests import PageRequest
from approvals.reach import Reach, reach_of
from approvals.replay import changes, report
from audit.log import Actor
from audit.people import Person


def _reach_or_404(user: Person) -> Reach:
    reach = reach_of(user)
    if not reach.admin and not reach.led:
        raise Http404("The simulator is for admins and the departments' leads.")
    return reach


def _grants(reach: Reach) -> Any:
    grants = Grant.objects.select_related("agent", "action_type").order_by("agent__slug", "action_type__slug")
    return grants if reach.admin else grants.filter(agent__department_id__in=reach.led_ids)


def _action_types(reach: Reach) -> Any:
    if reach.admin:
        return ActionType.objects.order_by("slug")
    return ActionType.objects.filter(grants__agent__department_id__in=reach.led_ids).distinct().order_by("slug")


def _departments(reach: Reach) -> Any:
    return Department.objects.order_by("name") if reach.admin else Department.objects.filter(pk__in=reach.led_ids)


def _choices(reach: Reach) -> dict[str, Any]:
    return {
        "grants": _grants(reach),
        "action_types": _action_types(reach),
        "departments": _departments(reach),
        "tiers": Tier.choices,
        "risks": Risk.choices,
        "admin": reach.admin,
        "default_days": report.DEFAULT_DAYS,
        "max_days": report.MAX_DAYS,
        "grant_fields": _labelled(Grant, changes.GRANT_FIELDS[1:]),
        "policy_fields": _labelled(PromotionPolicy, changes.POLICY_FIELDS),
    }


def _labelled(model: Any, names: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(name, label, help) of the model's fields, as the admin words them."""
    fields = [model._meta.get_field(name) for name in names]
    return [(f.name, str(f.verbose_name).capitalize(), str(f.help_text)) for f in fields]


def _target_in_reach(reach: Reach, kind: str, target: str) -> str:
    """The target as approvals.replay.changes names it, when this user may simulate it; else 404."""
    if kind == "grant":
        if not target.isdigit() or not _grants(reach).filter(pk=int(target)).exists():
            raise Http404("No such grant among yours.")
    elif kind == "action_type":
        if not _action_types(reach).filter(slug=target).exists():
            raise Http404("No such action type among yours.")
    elif kind == "policy":
        if target == "global" and not reach.admin:
            raise Http404("Only an admin changes the global default.")
        if target != "global" and not _departments(reach).filter(slug=target).exists():
            raise Http404("No such department among yours.")
    else:
        raise Http404("Unknown kind of change.")
    return target


FIELDS = {
    "grant": changes.GRANT_FIELDS,
    "action_type": changes.ACTION_TYPE_FIELDS,
    "policy": changes.POLICY_FIELDS,
}


@login_required
def simulator(request: PageRequest) -> HttpResponse:
    reach = _reach_or_404(request.user)
    context: dict[str, Any] = {**_choices(reach), "posted": request.POST}
    if request.method == "POST":
        context.update(_simulate(request, reach))
    if request.htmx and request.method == "POST":
        return render(request, "approvals/simulation_result.html", context)
    return render(request, "approvals/simulator.html", context)


def _simulate(request: PageRequest, reach: Reach) -> dict[str, Any]:
    kind = request.POST.get("kind", "")
    target = _target_in_reach(reach, kind, request.POST.get("target", "").strip())
    values = {name: request.POST[name] for name in FIELDS[kind] if request.POST.get(name, "").strip()}
    try:
        days = int(request.POST.get("days") or report.DEFAULT_DAYS)
        if not 1 <= days <= report.MAX_DAYS:
            raise ValueError
    except ValueError:
        return {"error": f"Days: a whole number from 1 to {report.MAX_DAYS}."}
    if not values:
        return {"error": "Say what would change: fill in at least one field."}
    try:
        change = changes.proposed(kind, target, values)
    except changes.ChangeError as error:
        return {"error": str(error)}
    if not change.edits:
        return {"error": "Those are the current values: there is nothing to simulate."}
    result = report.simulate(
        change, actor=Actor.user(request.user), days=days, department_ids=None if reach.admin else reach.led_ids
    )
    recorded, replayed = result.charts()
    return {"result": result, "data": result.as_dict(), "chart_recorded": recorded, "chart_replayed": replayed}
