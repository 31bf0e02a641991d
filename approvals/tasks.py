"""Celery tasks: thin callers of approvals.services. They take ids, re-read
the row, and return quietly when it is gone or has moved on."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from approvals import live, routing, services
from approvals.lifecycle import IllegalTransition, Status
from approvals.models import Action
from audit.log import Actor, record


@shared_task
@transaction.atomic
def route_action(action_id: str) -> None:
    """Set the waiting action's priority and SLA deadline, then push it to its department."""
    action = Action.objects.select_related("action_type", "department").filter(pk=action_id).first()
    if action is None or action.status not in (Status.PENDING, Status.SHADOWED):
        return
    if action.sla_deadline is None:
        priority = routing.priority(action.action_type.risk, action.amount)
        deadline = routing.sla_deadline(action.created_at, action.department.decision_sla)
        Action.objects.filter(pk=action.pk).update(priority=priority, sla_deadline=deadline)
        record(
            "action.routed",
            action,
            actor=Actor.system("router"),
            after={"department": action.department.slug, "priority": priority, "sla_deadline": deadline.isoformat()},
            department_id=action.department_id,
            agent_id=action.agent_id,
        )
    transaction.on_commit(lambda: live.publish_action_changed(action.pk, action.department_id, action.status))


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
