"""Lead-facing pages. Thin: they read through approvals.reads.queue and change
nothing except through approvals.services, whose refusals they show.

Every decision form posts to one view per verb and works without
JavaScript (post, redirect, message). With htmx the same view answers with
fragments of the page it came from: a queue row (forms carrying a `lane`
field) or the action page's decision panel. The rollback request and the
admins' gateway switch follow the same pattern.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents.models import Grant
from approvals import services
from approvals.models import (
    Action,
    Decision,
    DecisionVerdict,
    Execution,
    ExecutionKind,
    ExecutionOutcome,
    Executor,
    NotificationMode,
    NotificationPreference,
)
from approvals.reach import Reach, is_admin, reach_of
from approvals.reads import payload_review, previews, queue, queue_filters
from approvals.reads.story import action_story
from approvals.rules.lifecycle import IllegalTransition, Status
from approvals.services import gateway
from audit.models import AuditEvent

PAST_TENSE = {
    DecisionVerdict.APPROVE: "Approved",
    DecisionVerdict.EDIT_APPROVE: "Edited and approved",
    DecisionVerdict.REJECT: "Rejected",
    DecisionVerdict.VETO: "Vetoed",
}
# A bulk approval decides each row in its own transaction; cap the work one
# click can ask for.
BULK_LIMIT = 100


def _get_visible_action(user: Any, action_id: UUID) -> Action:
    """The action, if the user may see it (approvals.reach); else 404, so its existence stays private."""
    action = (
        reach_of(user)
        .actions_seen()
        .select_related("agent", "agent__owner", "action_type", "department")
        .filter(pk=action_id)
        .first()
    )
    if action is None:
        raise Http404("No such action among those you see.")
    return action


def _flash(text: str, level: int) -> dict[str, str]:
    return {"text": text, "level": messages.DEFAULT_TAGS[level]}


# ---------------------------------------------------------------- the queue


@login_required
def queue_page(request: HttpRequest) -> HttpResponse:
    user, lane, now = request.user, queue.lane_from(request.GET.get("lane")), timezone.now()
    # The departments once, as ids, for every read below (see queue.visible_to).
    reach = reach_of(user)
    counts = queue.counts_for(user, now, reach)
    filters = queue_filters.from_query(request.GET)
    context = {
        "lane": lane,
        "now": now,
        "filters": filters,
        "search_limit": queue_filters.SEARCH_LIMIT,
        "page": queue.page_of(user, lane, request.GET.get("page"), reach, counts, filters, now),
        "vetoable": list(queue.vetoable_for(user, now, reach)[: queue.VETO_LIMIT]) if lane == "pending" else [],
        "counts": counts,
    }
    if request.htmx:
        return render(request, "approvals/queue.html#lane-resync", context)
    context["led"], context["backed_up"] = reach.led, reach.backed_up
    if lane == "pending":
        context["facets"] = queue_filters.facets(queue.queue_for(user, reach), counts)
        context["sorts"] = queue_filters.SORTS
    return render(request, "approvals/queue.html", context)


@login_required
def queue_preview(request: HttpRequest, action_id: UUID) -> HttpResponse:
    """The preview pane beside the queue: what the focused row will do, why
    the agent asks, what the policy said and the agent's record, so a
    decision from the keyboard is never blind. The same reach as the action
    page (404 for an action the user does not see)."""
    action = _get_visible_action(request.user, action_id)
    grant = Grant.objects.filter(agent_id=action.agent_id, action_type_id=action.action_type_id).first()
    annotated = queue.find_for(request.user, action.pk)
    context = {
        "action": action,
        "preview": previews.preview_of(action.action_type, action.effective_payload),
        "rate": queue.approval_rate(action),
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
def bulk_approve(request: HttpRequest) -> HttpResponse:
    """Approve each selected low-risk row through services.approve, one by
    one, and report each row's outcome."""
    wanted = [(raw, _uuid(raw)) for raw in request.POST.getlist("action")[:BULK_LIMIT]]
    ids = [action_id for _, action_id in wanted if action_id is not None]
    selected = {action.pk: action for action in queue.queue_for(request.user).filter(pk__in=ids)}
    results = [
        _approve_one_of_many(request.user, raw, selected.get(action_id), request.POST.get(f"digest-{raw}"))
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
        "counts": queue.counts_for(request.user),
    }
    return render(request, "approvals/queue.html#bulk-result", context)


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None  # not an id: reported as not in the queue


def _approve_one_of_many(user: Any, raw_id: str, action: Action | None, seen_digest: str | None) -> BulkResult:
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


# ---------------------------------------------------------------- the action page


@login_required
def action_detail(request: HttpRequest, action_id: UUID) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    return render(request, "approvals/action_detail.html", _action_context(request, action))


def _action_context(request: HttpRequest, action: Action, **extra: Any) -> dict[str, Any]:
    user = request.user
    reach = reach_of(user)
    decisions = list(queue.decisions_of(action))
    mine = _standing_decision_of(user, action, decisions)
    may_decide = reach.decides(action)
    executions = list(action.executions.all())
    events = list(AuditEvent.objects.for_object(action).order_by("id"))
    reversible_until = _reversible_until(action, executions)
    review = payload_review.review(action, decisions, executed=_was_executed(action, executions))
    context = {
        "action": action,
        "decisions": decisions,
        "can": _what_user_can_do(user, action, may_decide, mine, reversible_until),
        "standing": _standing(reach, action, may_decide, mine, review.approvers),
        "rollback_note": _rollback_note(action, may_decide, reversible_until),
        "reversible_until": reversible_until,
        "outcome": _outcome(action, decisions),
        "payload_json": _pretty(action.payload),
        "approved_payload_json": None if action.approved_payload is None else _pretty(action.approved_payload),
        "context_json": _pretty(action.context),
        "edit_text": _pretty(action.effective_payload),
        # The edit form is built from these by static/countersign/edit_form.js: JSON in data
        # attributes (autoescaped), since htmx drops script elements from what it swaps in.
        "payload_schema_json": json.dumps(action.action_type.payload_schema),
        "standing_json": json.dumps(action.effective_payload),
        "preview": previews.preview_of(action.action_type, action.effective_payload),
        # The forms carry the digest of the payload this page shows: an
        # approval of a payload edited since is refused (services.approve).
        "payload_digest": action.standing_digest,
        "review": review,
        "edit_focus": request.GET.get("edit") == "1",
        "executions": [ExecutionRow.of(execution) for execution in executions],
        "rollback_request": _last_rollback_request(events),
        "agent_page_visible": reach.sees_agent(action.agent),
        "events": events,
        "story": action_story(action, decisions, executions, events),
        "history": queue.recent_history(action),
        "rate": queue.approval_rate(action),
    }
    context.update(extra)
    return context


# Past these, the standing payload was carried out: by a dispatch, or by its agent, which reported.
CARRIED_OUT = (Status.SUCCEEDED, Status.ROLLBACK_REQUESTED, Status.ROLLED_BACK)


def _was_executed(action: Action, executions: list[Execution]) -> bool:
    dispatched = any(e.kind == ExecutionKind.DISPATCH and e.outcome == ExecutionOutcome.SUCCEEDED for e in executions)
    return dispatched or action.status in CARRIED_OUT


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class ExecutionRow:
    """One dispatch or rollback attempt, with its JSON ready to read."""

    execution: Execution
    response_json: str
    undo_json: str

    @classmethod
    def of(cls, execution: Execution) -> ExecutionRow:
        return cls(
            execution,
            "" if execution.response is None else _pretty(execution.response),
            "" if execution.undo is None else _pretty(execution.undo),
        )


def _last_rollback_request(events: list[AuditEvent]) -> AuditEvent | None:
    """Who asked for the rollback, and why: the panel shows it while it runs."""
    return next((e for e in reversed(events) if e.verb == "action.rollback_requested"), None)


def _standing_decision_of(user: Any, action: Action, decisions: list[Decision]) -> Decision | None:
    """The user's decision that still stands: an approval of an earlier
    payload (another lead edited it since) leaves them free to approve this one."""
    standing = action.standing_digest
    return next((d for d in decisions if d.user_id == user.pk and d.stands_on(standing)), None)


def _what_user_can_do(
    user: Any, action: Action, may_decide: bool, mine: Decision | None, reversible_until: datetime | None
) -> dict[str, bool]:
    pending = action.status == Status.PENDING
    owns = action.agent.owner_id == user.pk
    return {
        "approve": pending and may_decide and not owns and mine is None,
        "reject": pending and may_decide and mine is None,
        "veto": may_decide and queue.place_of(action) == "veto",
        "mark": action.status == Status.SHADOWED and may_decide and mine is None,
        "rollback": _in_reversal_window(action, reversible_until) and may_decide,
    }


def _reversible_until(action: Action, executions: list[Execution]) -> datetime | None:
    """When the reversal window of a reversible action closes: its length
    after the last successful dispatch (the moment services.request_rollback
    counts from). None when it is not reversible or never succeeded."""
    if not action.action_type.reversible:
        return None
    succeeded = [
        e.finished_at
        for e in executions
        if e.kind == ExecutionKind.DISPATCH and e.outcome == ExecutionOutcome.SUCCEEDED and e.finished_at
    ]
    if not succeeded:
        return None
    return succeeded[-1] + timedelta(minutes=action.action_type.reversal_window_minutes)


def _in_reversal_window(action: Action, reversible_until: datetime | None) -> bool:
    return action.status == Status.SUCCEEDED and reversible_until is not None and timezone.now() <= reversible_until


def _rollback_note(action: Action, may_decide: bool, reversible_until: datetime | None) -> str:
    """Why a succeeded reversible action offers no rollback to this user; empty otherwise."""
    if action.status != Status.SUCCEEDED or not action.action_type.reversible:
        return ""
    if not _in_reversal_window(action, reversible_until):
        closed = f" at {timezone.localtime(reversible_until):%Y-%m-%d %H:%M}" if reversible_until else ""
        return f"The reversal window of this action closed{closed}: it can no longer be rolled back."
    if not may_decide:
        return f"Only the leads of {action.department} may roll this action back."
    return ""


def _standing(reach: Reach, action: Action, may_decide: bool, mine: Decision | None, approvers: list[str]) -> list[str]:
    """Why this user can or cannot decide, in the words the panel shows."""
    if action.status not in (Status.PENDING, Status.SHADOWED):
        return []
    notes = []
    department = action.department
    if action.agent.owner_id == reach.user.pk:
        notes.append(f"You own {action.agent.name}: you see its actions, and the leads of {department} decide them.")
    elif not may_decide:
        if action.escalated_at is None and department.pk in reach.backed_up_ids:
            deadline = timezone.localtime(action.sla_deadline).strftime("%Y-%m-%d %H:%M") if action.sla_deadline else ""
            notes.append(
                f"You are a backup approver for {department}: you may decide once this action escalates"
                + (f", after its SLA deadline ({deadline})." if deadline else ".")
            )
        else:
            notes.append(f"Only the leads of {department} decide this action.")
    required = action.action_type.approvals_required
    if action.status == Status.PENDING and required > 1:
        if mine is not None:
            notes.append("You approved. This critical action waits for a second approval from another lead.")
        elif approvers:
            notes.append(f"{', '.join(approvers)} approved; this critical action needs your second approval.")
        else:
            notes.append("Critical: it needs approvals from two different leads.")
    return notes


def _outcome(action: Action, decisions: list[Decision]) -> str:
    """Who decided a decided action, and how; empty while it waits."""
    if action.status in (Status.PENDING, Status.SHADOWED):
        return ""
    human = [d for d in decisions if d.verdict in queue.HUMAN_VERDICTS]
    # Past the decision (dispatched, rolled back...), say where it is now.
    later = "" if action.status in (Status.APPROVED, Status.REJECTED) else f"; it is now {action.get_status_display()}"
    if human:
        last = human[-1]
        when = timezone.localtime(last.created_at).strftime("%Y-%m-%d %H:%M")
        return f"{PAST_TENSE[last.verdict]} by {last.user.get_username()} at {when}{later}."
    if action.verdict == "approved":
        return f"Approved by policy ({action.verdict_reason or 'within the limits of its grant'}){later}."
    if action.status == Status.CANCELLED:
        return "Cancelled by its agent."
    return f"{action.get_status_display()}."


def _already_decided(action_id: UUID) -> str:
    action = Action.objects.get(pk=action_id)
    return f"Already decided: {_outcome(action, list(queue.decisions_of(action)))}"


# ---------------------------------------------------------------- deciding


@login_required
@require_POST
def approve(request: HttpRequest, action_id: UUID) -> HttpResponse:
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


def _payload_refused(request: HttpRequest, action: Action, text: str, errors: list[str]) -> HttpResponse:
    """Show the edit form again with the lead's text and the errors beside it; nothing changed."""
    context = _action_context(request, action, edit_text=text, edit_errors=errors, edit_focus=True)
    if request.htmx:
        context["flash"] = _flash("The edited payload was not approved: fix it and try again.", messages.ERROR)
        return render(request, "approvals/action_detail.html#panel-update", context)
    return render(request, "approvals/action_detail.html", context, status=422)


@login_required
@require_POST
def reject(request: HttpRequest, action_id: UUID) -> HttpResponse:
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
def veto(request: HttpRequest, action_id: UUID) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    try:
        services.veto(action.pk, request.user, reason=request.POST.get("reason", ""))
    except (services.DecisionRefused, IllegalTransition) as error:
        # The veto's own refusals say it best (e.g. "The undo window of this action has closed.").
        return _answer(request, action.pk, str(error), messages.ERROR)
    return _answer(request, action.pk, f"Vetoed {action.action_type.slug}: it will not be dispatched.")


@login_required
@require_POST
def shadow_mark(request: HttpRequest, action_id: UUID) -> HttpResponse:
    action = _get_visible_action(request.user, action_id)
    mark = request.POST.get("mark")
    if mark not in ("approve", "reject"):
        return _answer(request, action.pk, "Choose would approve or would reject.", messages.ERROR)
    try:
        services.mark_shadow(action.pk, request.user, would_approve=mark == "approve")
    except services.DecisionRefused as error:
        return _answer(request, action.pk, str(error), messages.ERROR)
    return _answer(request, action.pk, f"Marked: you would {mark} {action.action_type.slug}.")


def _answer(request: HttpRequest, action_id: UUID, text: str, level: int = messages.SUCCESS) -> HttpResponse:
    """Answer a decision where it was asked: a queue row (the form names its
    lane) or the action page; with htmx a fragment, else a redirect."""
    lane = request.POST.get("lane")
    if lane is None:
        if not request.htmx:
            messages.add_message(request, level, text)
            return redirect("action-detail", action_id)
        action = _get_visible_action(request.user, action_id)
        context = _action_context(request, action, flash=_flash(text, level))
        return render(request, "approvals/action_detail.html#panel-update", context)
    lane = queue.lane_from(lane)
    if not request.htmx:
        messages.add_message(request, level, text)
        return redirect(reverse("queue") + ("?lane=shadow" if lane == "shadow" else ""))
    now = timezone.now()
    action = queue.find_for(request.user, action_id)
    context = {
        "action": action,
        "place": queue.place_of(action, now) if action else None,
        "lane": lane,
        "lane_places": queue.PLACES_BY_LANE[lane],
        "now": now,
        "counts": queue.counts_for(request.user, now),
        "flash": _flash(text, level),
    }
    return render(request, "approvals/queue.html#row-result", context)


# ---------------------------------------------------------------- rolling back


@login_required
@require_POST
def rollback(request: HttpRequest, action_id: UUID) -> HttpResponse:
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


# ---------------------------------------------------------------- the gateway


@login_required
@require_POST
def gateway_pause(request: HttpRequest) -> HttpResponse:
    return _switch_gateway(request, paused=True)


@login_required
@require_POST
def gateway_resume(request: HttpRequest) -> HttpResponse:
    return _switch_gateway(request, paused=False)


def _switch_gateway(request: HttpRequest, *, paused: bool) -> HttpResponse:
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
    if not request.htmx:
        messages.add_message(request, level, text)
        return redirect("agent-list")
    context = {"state": gateway.read(), "admin": True, "flash": _flash(text, level)}
    return render(request, "approvals/gateway.html#update", context)


# ---------------------------------------------------------------- settings


@login_required
def lead_settings(request: HttpRequest) -> HttpResponse:
    """How the lead hears of new items: immediately, an hourly digest, or not at all."""
    if request.method == "POST":
        try:
            services.set_notification_mode(request.user, request.POST.get("mode", ""))
        except ValueError:
            messages.error(request, "Choose one of the notification options.")
        else:
            messages.success(request, "Notification preference saved.")
        return redirect("lead-settings")
    preference = NotificationPreference.for_user(request.user)
    return render(
        request,
        "approvals/settings.html",
        {"preference": preference, "modes": NotificationMode.choices, "led": list(reach_of(request.user).led)},
    )
