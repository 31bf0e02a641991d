"""Decision callbacks to agents: the outbox of signed POSTs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from approvals.models.action import Action
from approvals.rules.lifecycle import Status


class CallbackState(models.TextChoices):
    QUEUED = "queued", "Queued"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Callback(models.Model):
    """One signed POST to an action's callback_url, announcing one status it
    moved to. Written in the transaction of the move (an outbox row), sent by
    a task after commit, retried with backoff; the sweep re-queues what is
    due and was lost. Each attempt is also an audit event."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="callbacks")
    status = models.CharField(max_length=20, choices=Status.choices, help_text="The status announced.")
    event = models.CharField(max_length=60, help_text="The audit verb of the move, e.g. action.approved.")
    body = models.JSONField(default=dict, help_text="What is POSTed, frozen at the move: every attempt sends it.")
    state = models.CharField(max_length=10, choices=CallbackState.choices, default=CallbackState.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_http_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="callback_due_idx", condition=models.Q(state="queued")),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=CallbackState.values), name="callback_state_valid"),
        ]

    def __str__(self) -> str:
        return f"callback {self.status} of {self.action_id} ({self.state})"
