"""The alerts page, its acknowledge button and the fragments the alert socket pushes.

Acknowledging works without JavaScript (post, redirect, message); with htmx
the same view answers with the acknowledged row and the badge, out of band.
On the alerts page the socket's push carries both lists, open and recently
acknowledged, so every lead's page shows who took an alert, live.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals.models import Alert
from approvals.monitoring import alerts
from approvals.pages.answers import answer
from approvals.pages.requests import PageRequest
from audit.people import Person

ACKNOWLEDGED_DAYS = 7
LIST_LIMIT = 100


def _open(user: Person) -> QuerySet[Alert]:
    return (
        alerts.visible_to(user)
        .filter(acknowledged_at__isnull=True)
        .select_related("agent", "department")
        .order_by("-raised_at", "-pk")[:LIST_LIMIT]
    )


def _acknowledged(user: Person) -> QuerySet[Alert]:
    since = timezone.now() - timedelta(days=ACKNOWLEDGED_DAYS)
    return (
        alerts.visible_to(user)
        .filter(acknowledged_at__gte=since)
        .select_related("agent", "department", "acknowledged_by")
        .order_by("-acknowledged_at", "-pk")[:LIST_LIMIT]
    )


@login_required
def alert_list(request: PageRequest) -> HttpResponse:
    context = {
        "open_list": _open(request.user),
        "acknowledged_list": _acknowledged(request.user),
        "acknowledged_days": ACKNOWLEDGED_DAYS,
    }
    return render(request, "approvals/alerts.html", context)


@login_required
@require_POST
def acknowledge(request: PageRequest, alert_id: int) -> HttpResponse:
    try:
        changed = alerts.acknowledge(alert_id, user=request.user)
    except alerts.NotYours as error:
        raise Http404(str(error)) from error
    text = "Acknowledged: the others see that you have it." if changed else "Someone had already acknowledged it."
    return answer(
        request,
        text,
        messages.SUCCESS,
        redirect_to=reverse("alerts"),
        fragment="approvals/alerts.html#acknowledged",
        context=lambda: {
            "alert": Alert.objects.select_related("agent", "department", "acknowledged_by").get(pk=alert_id),
            "open_alerts": alerts.open_count(request.user),
        },
    )


def live_update(user: Person, *, with_list: bool) -> str:
    """What the alert socket sends a user: their badge, and on the alerts
    page their open alerts and the recently acknowledged ones (so an alert
    someone else acknowledged moves from one list to the other)."""
    context: dict[str, Any] = {"open_alerts": alerts.open_count(user), "open_list": None}
    if with_list:
        context.update(
            open_list=list(_open(user)),
            acknowledged_list=list(_acknowledged(user)),
            acknowledged_days=ACKNOWLEDGED_DAYS,
        )
    return render_to_string("approvals/alerts.html#live-update", context).strip()
