"""The confirm page behind an email's approve and reject links (approvals/notify/decision_links.py).

GET shows the action, its preview and one button; it changes nothing. POST
decides through the link, once. A visitor not logged in is sent to log in
and back; a link never logs anybody in.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from approvals.models import DecisionLink
from approvals.notify import decision_links
from approvals.notify.decision_links import LinkRefused
from approvals.reads import previews
from approvals.rules.lifecycle import Status


def _refused(request: HttpRequest, refusal: LinkRefused) -> HttpResponse:
    context = {"refusal": refusal}
    return render(request, "approvals/decision_link_refused.html", context, status=refusal.status)


def _confirm(request: HttpRequest, link: DecisionLink, error: str = "", status: int = 200) -> HttpResponse:
    action = link.action
    context = {
        "link": link,
        "action": action,
        "approving": link.verdict == decision_links.APPROVE,
        "preview": previews.preview_of(action.action_type, action.effective_payload),
        "error": error,
    }
    return render(request, "approvals/decision_link.html", context, status=status)


@require_http_methods(["GET", "POST"])
def decision_link(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = decision_links.open_token(token)
    except LinkRefused as refusal:
        return _refused(request, refusal)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if request.method == "GET":
        try:
            decision_links.check(link, request.user)
        except LinkRefused as refusal:
            return _refused(request, refusal)
        return _confirm(request, link)
    reason = request.POST.get("reason", "").strip()
    if link.verdict == decision_links.REJECT and not reason:
        return _confirm(request, link, "Say why you reject it: the reason goes back to the agent.", status=422)
    try:
        action = decision_links.use(link.pk, request.user, reason=reason)
    except LinkRefused as refusal:
        return _refused(request, refusal)
    if action.status == Status.PENDING:
        text = "Your approval is recorded. This critical action waits for a second approval from another lead."
    elif action.status == Status.APPROVED:
        text = f"Approved {action.action_type.slug}."
    else:
        text = f"Rejected {action.action_type.slug}; the reason goes back to the agent."
    messages.success(request, text)
    return redirect("action-detail", action.pk)
