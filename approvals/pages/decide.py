"""A lead's decisions from the queue or the action page: approve (as proposed or
edited), reject, veto, shadow marks and rollback, each through approvals.services."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals import services
from approvals.models import (
    Action,
    Executor,
)
from approvals.pages.actions import _action_context, _get_visible_action, _outcome
from approvals.pages.answers import answer, flash
from approvals.pages.requests import PageRequest
from approvals.reads import queue
from approvals.rules.lifecycle import IllegalTransition, Status


def _already_decided(action_id: UUID) -> str:
    action = Action.objects.get(pk=action_id)
    return f"Already decided: {_outcome(action, list(queue.decisions_of(action)))}"


@login_required
@require_POST
def approve(request: PageRequest, action_id: UUID) -> HttpResponse:
    """Approve, or edit and approve when the form carries a payload."""
    action = _get_visible_action(request.user, action_id)
    text = request.POST.get("payload")
    edited, parse_error = _parse_payload(text, action)
    if parse_error:
        return _payload_refused(request, action, text or "", [parse_error])
    try:
        action = services.approve(
            action.pk,
            request.user,
            comment=request.POST.get("comment", ""),
            edited_payload=edited,
            seen_digest=request.POST.get("payload_digest"),
        )
    except services.InvalidPayload as error:
        return _payload_refused(request, action, text or "", _schema_messages(error.errors))
    except (services.EditRefused, services.PayloadChanged) as error:
        if text is None:  # the plain approve form: nothing typed to keep
            return _answer(request, action.pk, str(error), messages.ERROR)
        return _payload_refused(request, action, text, [str(error)])
    except services.DecisionRefused as error:
        return _answer(request, action.pk, str(error), messages.ERROR)
    except IllegalTransition:
        return _answer(request, action.pk, _already_decided(action.pk), messages.ERROR)
    if action.status == Status.PENDING:
        return _answer(
            request,
            action.pk,
            "Your approval is recorded. This critical action waits for a second approval from another lead.",
            messages.INFO,
        )
    verb = "Edited and approved" if edited is not None else "Approved"
    return _answer(request, action.pk, f"{verb} {action.action_type.slug}.", messages.SUCCESS)


def _parse_payload(text: str | None, action: Action) -> tuple[Any, str]:
    """(edited payload or None, error). An edit identical to what stands is a plain approval."""
    if text is None:
        return None, ""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"Not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
    if not isinstance(payload, dict):
        return None, "The payload must be a JSON object, {…}."
    return (None if payload == action.effective_payload else payload), ""


def _schema_messages(errors: dict[str, list[str]]) -> list[str]:
    return [f"{path}: {message}" if path else message for path, lines in errors.items() for message in lines]


def _payload_refused(request: PageRequest, action: Action, text: str, errors: list[str]) -> HttpResponse:
    """Show the edit form again with the lead's text and the errors beside it; nothing changed."""
    context = _action_context(request, action, edit_text=text, edit_errors=errors, edit_focus=True)
    if request.htmx:
        context["flash"] = flash("The edited payload was not approved: fix it and try again.", messages.ERROR)
        return render(request, "approvals/action_detail.html#panel-update", context)
    return render(request, "approvals/action_detail.html", context, status=422)


@login_required
@require_POST
def reject(request: PageRequest, action_id: UUID) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    try:
        services.reject(action.pk, request.user, reason=request.POST.get("reason", ""))
    except services.DecisionRefused as error:
        return _answer(request, action.pk, str(error), messages.ERROR)
    except IllegalTransition:
        return _answer(request, action.pk, _already_decided(action.pk), messages.ERROR)
    return _answer(request, action.pk, f"Rejected {action.action_type.slug}; the reason goes back to the agent.")


@login_required
@require_POST
def veto(request: PageRequest, action_id: UUID) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    try:
        services.veto(action.pk, request.user, reason=request.POST.get("reason", ""))
    except (services.DecisionRefused, IllegalTransition) as error:
        # The veto's own refusals say it best (e.g. "The undo window of this action has closed.").
        return _answer(request, action.pk, str(error), messages.ERROR)
    return _answer(request, action.pk, f"Vetoed {action.action_type.slug}: it will not be dispatched.")


@login_required
@require_POST
def shadow_mark(request: PageRequest, action_id: UUID) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    mark = request.POST.get("mark")
    if mark not in ("approve", "reject"):
        return _answer(request, action.pk, "Choose would approve or would reject.", messages.ERROR)
    try:
        services.mark_shadow(action.pk, request.user, would_approve=mark == "approve")
    except services.DecisionRefused as error:
        return _answer(request, action.pk, str(error), messages.ERROR)
    return _answer(request, action.pk, f"Marked: you would {mark} {action.action_type.slug}.")


def _answer(request: PageRequest, action_id: UUID, text: str, level: int = messages.SUCCESS) -> HttpResponse:
    """Answer a decision where it was asked: a queue row (the form names its
    lane) or the action page."""
    lane = request.POST.get("lane")
    if lane is None:
        return answer(
            request,
            text,
            level,
            redirect_to=reverse("action-detail", args=[action_id]),
            fragment="approvals/action_detail.html#panel-update",
            context=lambda: _action_context(request, _get_visible_action(request.user, action_id)),
        )
    lane = queue.lane_from(lane)

    def row() -> dict[str, Any]:
        now = timezone.now()
        action = queue.find_for(request.user, action_id)
        return {
            "action": action,
            "place": queue.place_of(action, now) if action else None,
            "lane": lane,
            "lane_places": queue.PLACES_BY_LANE[lane],
            "now": now,
            "counts": queue.counts_for(request.user, now),
        }

    return answer(
        request,
        text,
        level,
        redirect_to=reverse("queue") + ("?lane=shadow" if lane == "shadow" else ""),
        fragment="approvals/queue.html#row-result",
        context=row,
    )


@login_required
@require_POST
def rollback(request: PageRequest, action_id: UUID) -> HttpResponse:
    """Ask for a succeeded action to be undone: the gateway calls the
    target's rollback, or the agent sees rollback_requested and reports."""
    action = _get_visible_action(request.user, action_id)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        return _answer(request, action.pk, "Say why this action must be rolled back.", messages.ERROR)
    try:
        services.request_rollback(action.pk, request.user, reason=reason)
    except services.DecisionRefused as error:
        return _answer(request, action.pk, str(error), messages.ERROR)
    except IllegalTransition:
        current = Action.objects.get(pk=action.pk).get_status_display().lower()
        return _answer(
            request, action.pk, f"Only a succeeded action can be rolled back; this one is {current}.", messages.ERROR
        )
    how = (
        "its agent sees rollback_requested and reports the result."
        if action.action_type.executor == Executor.AGENT
        else "the gateway asks the target to undo it."
    )
    return _answer(request, action.pk, f"Rollback of {action.action_type.slug} requested: {how}")
