"""Executions: each attempt to carry an action out or to roll it back."""

from __future__ import annotations

from django.db import models

from approvals.models.action import Action


class ExecutionKind(models.TextChoices):
    DISPATCH = "dispatch", "Dispatch"
    ROLLBACK = "rollback", "Rollback"


class ExecutionOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    RETRYING = "retrying", "Failed, will retry"


class Execution(models.Model):
    """One attempt to carry out (or roll back) an approved action."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="executions")
    kind = models.CharField(max_length=10, choices=ExecutionKind.choices, default=ExecutionKind.DISPATCH)
    attempt = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=ExecutionOutcome.choices, default=ExecutionOutcome.RUNNING)
    response = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    undo = models.JSONField(null=True, blank=True, help_text="What the target needs to roll this back.")
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When a retrying attempt's next one is due.")

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(fields=["action", "kind", "attempt"], name="one_execution_per_attempt"),
            models.CheckConstraint(condition=models.Q(kind__in=ExecutionKind.values), name="execution_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(outcome__in=ExecutionOutcome.values), name="execution_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.attempt}: {self.outcome}"
