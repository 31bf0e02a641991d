"""The global pause's switch on the agent list: admins only, with a reason."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from approvals.pages.answers import answer
from approvals.pages.requests import PageRequest
from approvals.reach import is_admin
from approvals.services import gateway


@login_required
@require_POST
def gateway_pause(request: PageRequest) -> HttpResponse:
    return _switch_gateway(request, paused=True)


@login_required
@require_POST
def gateway_resume(request: PageRequest) -> HttpResponse:
    return _switch_gateway(request, paused=False)


def _switch_gateway(request: PageRequest, *, paused: bool) -> HttpResponse:
    """Pause or resume every agent at once: admins only, always with a reason."""
    if not is_admin(request.user):
        # Not a private object (every page shows the pause): a refusal, not a 404.
        raise PermissionDenied("Only admins pause or resume the gateway.")
    try:
        changed = gateway.set_paused(paused, user=request.user, reason=request.POST.get("reason", ""))
    except ValueError as error:
        text, level = str(error), messages.ERROR
    else:
        if not changed:
            text, level = f"The gateway was already {'paused' if paused else 'running'}.", messages.INFO
        elif paused:
            text, level = "The gateway is paused: no proposal is accepted and nothing is dispatched.", messages.SUCCESS
        else:
            text, level = "The gateway is running again.", messages.SUCCESS
    return answer(
        request,
        text,
        level,
        redirect_to=reverse("agent-list"),
        fragment="approvals/gateway.html#update",
        context=lambda: {"state": gateway.read(), "admin": True},
    )
