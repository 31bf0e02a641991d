"""Celery tasks: thin callers of approvals.services and approvals.notify.emails.
They take ids, re-read the row, and return quietly when it is gone or has
moved on."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals import services
from approvals.autonomy import trust
from approvals.dispatch import callbacks, executors
from approvals.models import Action, Alert, Execution, ExecutionKind, Executor
from approvals.monitoring import alert_delivery, detectors
from approvals.notify import emails as notifications
from approvals.notify import slack
from approvals.rules.lifecycle import IllegalTransition, Status
from approvals.services import sweep

log = logging.getLogger(__name__)

ESCALATION_BATCH = 200
# A new action's email waits this long and goes only if the action is still
# pending then: a lead watching the queue decides many within seconds, and
# mail about those would only mislead. It also keeps rendering a mail per lead
# off the moment the row is pushed to their screens.
NEW_ACTION_EMAIL_DELAY_SECONDS = 30
# Mail servers fail in passing: retry with backoff. smtplib's errors are OSErrors.
MAIL_RETRIES = {"autoretry_for": (OSError,), "retry_backoff": True, "retry_backoff_max": 600, "max_retries": 5}


@shared_task
@transaction.atomic
def route_action(action_id: str) -> None:
    """Record where a new waiting action went and how urgent it is, and have
    the leads of a pending one emailed.

    The proposal chose the department, priority and SLA deadline
    (approvals.rules.routing) and pushed the row to the leads' screens as it
    committed; this runs after, off the request. At least once per proposal
    (acks late: a lost worker's message is delivered again), so it is
    claimed: only the run that sets `routed_at` records and emails.
    """
    action = services.route(action_id)
    if action is not None and action.status == Status.PENDING:
        # Robust: the routing has committed; a failed enqueue is logged, not raised.
        transaction.on_commit(
            lambda: notify_new_action.apply_async((str(action.pk),), countdown=NEW_ACTION_EMAIL_DELAY_SECONDS),
            robust=True,
        )
        if slack.enabled() and action.department.slack_channel:
            transaction.on_commit(lambda: post_action_to_slack.delay(str(action.pk)), robust=True)


@shared_task
def route_actions(action_ids: list[str]) -> None:
    """route_action for each new waiting action of a burst (gathered by the
    agent API's door: approvals.after_answer.Gathering), each in its own
    transaction: one that fails is logged and left to the sweep, and the
    others are routed all the same."""
    for action_id in action_ids:
        try:
            route_action(action_id)
        except Exception:
            log.exception("Routing action %s failed; the sweep routes it", action_id)


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


# Slack's Web API fails in passing too: slack-sdk raises SlackApiError on an
# error answer and OSErrors (URLError) on the network.
SLACK_RETRIES = {"retry_backoff": True, "retry_backoff_max": 600, "max_retries": 5}


def _slack_errors() -> tuple[type[Exception], ...]:
    from slack_sdk.errors import SlackApiError

    return (SlackApiError, OSError)


@shared_task(bind=True, **SLACK_RETRIES)
def post_action_to_slack(self: Task, action_id: str) -> bool:
    """Post a new pending action to its department's Slack channel (approvals.notify.slack)."""
    try:
        return slack.post_new_action(action_id) is not None
    except _slack_errors() as error:
        raise self.retry(exc=error) from error


@shared_task(bind=True, **SLACK_RETRIES)
def update_slack_messages(self: Task, action_id: str) -> int:
    """Rewrite the Slack messages of an action after it changed, wherever it was decided."""
    try:
        return slack.update_messages(action_id)
    except _slack_errors() as error:
        raise self.retry(exc=error) from error


@shared_task(**MAIL_RETRIES)
def tell_slack_user(channel: str, slack_user_id: str, text: str) -> None:
    """Tell one Slack user (ephemeral) what became of their click."""
    slack.tell(channel, slack_user_id, text)


@shared_task(**MAIL_RETRIES)
def notify_escalation(action_id: str) -> int:
    """Email the department's backup approvers about an escalated action."""
    return notifications.notify_escalation(action_id)


@shared_task
def send_lead_digests() -> int:
    """The hourly digest for every lead who chose one (failed sends retry next hour)."""
    return notifications.send_digests()


# ---------------------------------------------------------------- dispatch and rollback


def enqueue_dispatch(action_id: str, due: datetime | None = None) -> None:
    """Queue an approved webhook action's dispatch for when its undo window ends."""
    countdown = (due - timezone.now()).total_seconds() if due else 0.0
    if countdown > 0:
        dispatch_action.apply_async((action_id,), countdown=countdown)
    else:
        # No ETA at all: a worker holds ETA messages in its timer, which costs tens of milliseconds.
        dispatch_action.delay(action_id)


@shared_task
def dispatch_action(action_id: str) -> str | None:
    """Make the next attempt of a webhook action's dispatch and record it;
    returns its outcome, or None when there was nothing to claim.

    At least once per message (acks late: a killed worker's message comes
    back), at most once per attempt: start_dispatch / retry_dispatch claim
    the attempt under the action's lock, and every attempt sends the same
    Idempotency-Key. Exits quietly when the action is gone, not a webhook's,
    already claimed, not yet due, or held by the kill switch.
    """
    if not Action.objects.filter(pk=action_id, action_type__executor=Executor.WEBHOOK).exists():
        return None
    execution = services.start_dispatch(action_id) or services.retry_dispatch(action_id)
    if execution is None:
        return None
    action = Action.objects.select_related("action_type", "agent").get(pk=action_id)
    delivery = executors.deliver(action, execution)
    return _record(execution, delivery, dispatch_action)


@shared_task
def roll_back_action(action_id: str) -> str | None:
    """Make the next attempt of a webhook action's requested rollback: the
    target's rollback URL gets the `undo` object its dispatch answered with."""
    execution = services.start_rollback(action_id)
    if execution is None:
        return None
    action = Action.objects.select_related("action_type", "agent").get(pk=action_id)
    delivery = executors.roll_back(action, execution, services.undo_of(action))
    return _record(execution, delivery, roll_back_action)


def _record(execution: Execution, delivery: executors.Delivery, again: Task) -> str:
    """Record an attempt's outcome; queue the next attempt if it is to be retried."""
    try:
        if delivery.outcome == executors.Outcome.RETRY:
            retrying = services.retry_later(execution.pk, response=delivery.response, error=delivery.error)
            # Eager (embedded) tasks cannot wait: the sweep starts the retry once it is due.
            if retrying is not None and not again.app.conf.task_always_eager:
                again.apply_async((str(execution.action_id),), eta=retrying.retry_at)
        elif execution.kind == ExecutionKind.DISPATCH:
            services.finish_dispatch(
                execution.pk,
                succeeded=delivery.outcome == executors.Outcome.SUCCEEDED,
                response=delivery.response,
                error=delivery.error,
                undo=delivery.undo,
            )
        else:
            services.finish_rollback(
                execution.action_id,
                succeeded=delivery.outcome == executors.Outcome.SUCCEEDED,
                response=delivery.response,
                error=delivery.error,
                execution_id=execution.pk,
            )
    except IllegalTransition:
        # The sweep took this attempt for lost and started another meanwhile,
        # which carries the same Idempotency-Key: its outcome is the one kept.
        log.warning(
            "Attempt %s at %s of action %s ended after it was superseded",
            execution.attempt,
            execution.kind,
            execution.action_id,
        )
    return delivery.outcome


@shared_task
def sweep_dispatches() -> int:
    """Re-queue dispatches and rollbacks that should be moving and are not,
    fail agent-executed actions past their report deadline, and route
    waiting actions whose routing message was lost (approvals.services.sweep).
    Returns how many actions it touched."""
    now = timezone.now()
    # Routed here, not re-queued: the broker that lost the message may still
    # be unsteady, and route_action claims each action, so a late message
    # that arrives after finds nothing to do.
    unrouted = sweep.unrouted(now)
    for action_id in unrouted:
        route_action(action_id)
    dispatches, rollbacks = sweep.dispatches_to_requeue(now), sweep.rollbacks_to_requeue(now)
    for action_id in dispatches:
        dispatch_action.delay(action_id)
    for action_id in rollbacks:
        roll_back_action.delay(action_id)
    due_callbacks = callbacks.due(now)
    for callback_id in due_callbacks:
        send_callback.delay(callback_id)
    return len(unrouted) + len(dispatches) + len(rollbacks) + len(due_callbacks) + sweep.time_out_reports(now)


@shared_task
def send_callback(callback_id: int) -> str | None:
    """Make the next attempt of a decision callback (approvals.dispatch.callbacks);
    returns its outcome, or None when there was nothing due. A retry is
    queued for its time; on the embedded run (eager tasks) the sweep sends it."""
    attempt = callbacks.attempt(callback_id)
    if attempt is None:
        return None
    if attempt.retry_at is not None and not send_callback.app.conf.task_always_eager:
        send_callback.apply_async((callback_id,), eta=attempt.retry_at)
    return attempt.outcome


@shared_task(**MAIL_RETRIES)
def notify_circuit_broken(agent_id: int, reason: str) -> int:
    """Email the owner and department leads of an agent the circuit breaker suspended."""
    return notifications.notify_circuit_broken(agent_id, reason)


@shared_task
def evaluate_trust() -> int:
    """The hourly trust evaluation: every grant's tier against its record; returns how many moved."""
    changes = trust.evaluate()
    log.info("Trust evaluation moved %d grant(s)", len(changes))
    return len(changes)


@shared_task(**MAIL_RETRIES)
def notify_tier_change(change_id: int) -> int:
    """Email the owner and department leads of an agent whose grant changed tier."""
    return notifications.notify_tier_change(change_id)


# ---------------------------------------------------------------- monitoring


@shared_task
def detect_anomalies() -> int:
    """Run every detector (approvals.monitoring.detectors); returns how many findings they raised or repeated."""
    return detectors.run()


def send_alert(alert_id: int) -> None:
    """Queue an alert's email and one delivery per configured webhook, each retried on its own."""
    email_alert.delay(alert_id)
    for url in settings.ALERT_WEBHOOK_URLS:
        post_alert_webhook.delay(alert_id, url, alert_delivery.SIGNED)
    for url in settings.ALERT_SLACK_WEBHOOK_URLS:
        post_alert_webhook.delay(alert_id, url, alert_delivery.SLACK)


def _alert(alert_id: int) -> Alert | None:
    return Alert.objects.select_related("agent", "department").filter(pk=alert_id).first()


@shared_task(**MAIL_RETRIES)
def email_alert(alert_id: int) -> int:
    """Email an alert to the agent's owner and the department's leads."""
    alert = _alert(alert_id)
    return alert_delivery.email(alert) if alert is not None else 0


@shared_task(autoretry_for=(alert_delivery.WebhookFailed,), retry_backoff=True, retry_backoff_max=600, max_retries=5)
def post_alert_webhook(alert_id: int, url: str, style: str) -> int | None:
    """POST an alert to one webhook receiver; returns its HTTP status."""
    alert = _alert(alert_id)
    return alert_delivery.post(alert, url, style) if alert is not None else None
