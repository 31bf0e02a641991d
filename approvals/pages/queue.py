"""The lead's queue, /queue/: the page, its preview pane and bulk approval
(the reads behind it are approvals.reads.queue and queue_filters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents.models import Grant
from approvals import services
from approvals.models import (
    Action,
)
from approvals.pages.actions import _get_visible_action
from approvals.pages.decide import _already_decided
from approvals.pages.requests import PageRequest
from approvals.reach import reach_of
from approvals.reads import previews, queue_filters
from approvals.reads import queue as queue_reads
from approvals.rules.lifecycle import IllegalTransition
from audit.people import Person

# A bulk approval decides each row in its own transaction; cap the work one
# click can ask for.
BULK_LIMIT = 100


@login_required
def queue_page(request: PageRequest) -> HttpResponse:
    user, lane, now = request.user, queue_reads.lane_from(request.GET.get("lane")), timezone.now()
    # The departments once, as ids, for every read below (see queue_reads.visible_to).
    reach = reach_of(user)
    counts = queue_reads.counts_for(user, now, reach)
    filters = queue_filters.from_query(request.GET)
    context: dict[str, Any] = {
        "lane": lane,
        "now": now,
        "filters": filters,
        "search_limit": queue_filters.SEARCH_LIMIT,
        "page": queue_reads.page_of(user, lane, request.GET.get("page"), reach, counts, filters, now),
        "vetoable": list(queue_reads.vetoable_for(user, now, reach)[: queue_reads.VETO_LIMIT])
        if lane == "pending"
        else [],
        "counts": counts,
    }
    if request.htmx:
        return render(request, "approvals/queue.html#lane-resync", context)
    context["led"], context["backed_up"] = reach.led, reach.backed_up
    if lane == "pending":
        context["facets"] = queue_filters.facets(queue_reads.queue_for(user, reach), counts)
        context["sorts"] = queue_filters.SORTS
    return render(request, "approvals/queue.html", context)


@login_required
def queue_preview(request: PageRequest, action_id: UUID) -> HttpResponse:
    """The preview pane beside the queue: what the focused row will do, why
    the agent asks, what the policy said and the agent's record, so a
    decision from the keyboard is never blind. The same reach as the action
    page (404 for an action the user does not see)."""
    action = _get_visible_action(request.user, action_id)
    grant = Grant.objects.filter(agent_id=action.agent_id, action_type_id=action.action_type_id).first()
    annotated = queue_reads.find_for(request.user, action.pk)
    context = {
        "action": action,
        "preview": previews.preview_of(action.action_type, action.effective_payload),
        "rate": queue_reads.approval_rate(action),
        "grant": grant,
        "bulk_refusal": queue_filters.bulk_refusal(annotated or action, request.user),
        "edited": action.approved_payload is not None,
    }
    return render(request, "approvals/preview_pane.html", context)


@dataclass(frozen=True)
class BulkResult:
    action_id: str
    label: str
    approved: bool
    message: str


@login_required
@require_POST
def bulk_approve(request: PageRequest) -> HttpResponse:
    """Approve each selected low-risk row through services.approve, one by
    one, and report each row's outcome."""
    wanted = [(raw, _uuid(raw)) for raw in request.POST.getlist("action")[:BULK_LIMIT]]
    ids = [action_id for _, action_id in wanted if action_id is not None]
    selected = {action.pk: action for action in queue_reads.queue_for(request.user).filter(pk__in=ids)}
    results = [
        _approve_one_of_many(
            request.user,
            raw,
            selected.get(action_id) if action_id is not None else None,
            request.POST.get(f"digest-{raw}"),
        )
        for raw, action_id in wanted
    ]
    if not request.htmx:
        for result in results:
            level = messages.SUCCESS if result.approved else messages.ERROR
            messages.add_message(request, level, f"{result.label}: {result.message}")
        if not results:
            messages.info(request, "Select the rows to approve first.")
        return redirect("queue")
    context = {
        "results": results,
        "removed": [result.action_id for result in results if result.approved],
        "lane": "pending",
        "counts": queue_reads.counts_for(request.user),
    }
    return render(request, "approvals/queue.html#bulk-result", context)


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None  # not an id: reported as not in the queue


def _approve_one_of_many(user: Person, raw_id: str, action: Action | None, seen_digest: str | None) -> BulkResult:
    if action is None:
        return BulkResult(raw_id, "Unknown action", False, "Not in your queue any more.")
    label = f"{action.action_type.slug} by {action.agent.name}"
    refusal = queue_filters.bulk_refusal(action, user)
    if refusal:
        return BulkResult(raw_id, label, False, f"{refusal[0].upper()}{refusal[1:]}. Open it to decide.")
    try:
        services.approve(action.pk, user, seen_digest=seen_digest)
    except services.DecisionRefused as error:
        return BulkResult(raw_id, label, False, str(error))
    except IllegalTransition:
        return BulkResult(raw_id, label, False, _already_decided(action.pk))
    return BulkResult(raw_id, label, True, "Approved.")
