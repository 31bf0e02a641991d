"""Celery tasks: thin callers of approvals.services and approvals.notifications.
They take ids, re-read the row, and return quietly when it is gone or has
moved on."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from approvals import live, notifications, routing, services
from approvals.lifecycle import IllegalTransition, Status
from approvals.models import Action
from audit.log import Actor, record

ESCALATION_BATCH = 200
# Mail servers fail in passing: retry with backoff. smtplib's errors are OSErrors.
MAIL_RETRIES = {"autoretry_for": (OSError,), "retry_backoff": True, "retry_backoff_max": 600, "max_retries": 5}


@shared_task
@transaction.atomic
def route_action(action_id: str) -> None:
    """Set the waiting action's priority and SLA deadline, push it to its
    department's queue and, for a pending one, have its leads emailed.

    Runs at least once per proposal (acks late: a lost worker's message is
    delivered again), so routing is claimed: only the run that sets the
    deadline records the event and sends the emails; every run publishes.
    """
    action = Action.objects.select_related("action_type", "agent", "department").filter(pk=action_id).first()
    if action is None or action.status not in (Status.PENDING, Status.SHADOWED):
        return
    # The department was chosen at proposal (routing.department_id_for): the row needs one.
    routed = _claim_routing(action)
    if routed:
        record(
            "action.routed",
            action,
            actor=Actor.system("router"),
            after={
                "department": action.department.slug,
                "priority": action.priority,
                "sla_deadline": action.sla_deadline.isoformat() if action.sla_deadline else None,
            },
            department_id=action.department_id,
            agent_id=action.agent_id,
        )
    # The browsers first, the mailboxes after: a row on screen beats an email.
    transaction.on_commit(lambda: live.publish_action_changed(action.pk, action.department_id, action.status))
    if routed and action.status == Status.PENDING:
        # Robust: the routing has committed; a failed enqueue is logged, not raised.
        transaction.on_commit(lambda: notify_new_action.delay(str(action.pk)), robust=True)


def _claim_routing(action: Action) -> bool:
    """Set priority and SLA deadline, on the row and on `action`, unless another run already has."""
    priority = routing.priority(action.action_type.risk, action.amount)
    deadline = routing.sla_deadline(action.created_at, action.department.decision_sla)
    # The status in the filter too: a lead may have decided it since it was read.
    if not Action.objects.filter(pk=action.pk, status=action.status, sla_deadline__isnull=True).update(
        priority=priority, sla_deadline=deadline
    ):
        return False
    action.priority, action.sla_deadline = priority, deadline
    return True


@shared_task
def expire_stale_actions() -> int:
    """Expire pending actions past their expiry; returns how many."""
    expired = 0
    stale = Action.objects.filter(status=Status.PENDING, expires_at__lte=timezone.now()).values_list("pk", flat=True)
    for action_id in list(stale[:1000]):
        try:
            services.expire(action_id)
            expired += 1
        except IllegalTransition:
            pass  # decided meanwhile
    return expired


@shared_task
def escalate_overdue_actions() -> int:
    """Escalate pending actions past their SLA deadline, most overdue first,
    in batches until none is left; returns how many this run escalated.

    Safe to run concurrently (a slow run and the next minute's): each action
    is claimed by services.escalate's conditional update, so it escalates once.
    """
    escalated = 0
    while True:
        overdue = Action.objects.overdue(timezone.now()).order_by("sla_deadline").values_list("pk", flat=True)
        batch = list(overdue[:ESCALATION_BATCH])
        won = sum(1 for action_id in batch if services.escalate(action_id) is not None)
        escalated += won
        # A batch short of full was the last; one that won nothing was taken
        # by a concurrent run, which will finish the rest.
        if len(batch) < ESCALATION_BATCH or not won:
            return escalated


@shared_task(**MAIL_RETRIES)
def notify_new_action(action_id: str) -> int:
    """Email the department's immediate-mode leads about a new pending action."""
    return notifications.notify_new_action(action_id)


@shared_task(**MAIL_RETRIES)
def notify_escalation(action_id: str) -> int:
    """Email the department's backup approvers about an escalated action."""
    return notifications.notify_escalation(action_id)


@shared_task
def send_lead_digests() -> int:
    """The hourly digest for every lead who chose one (failed sends retry next hour)."""
    return notifications.send_digests()
