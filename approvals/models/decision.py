"""Decisions: what each person said about an action."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from approvals.models.action import Action


class DecisionVerdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    EDIT_APPROVE = "edit_approve", "Edit and approve"
    REJECT = "reject", "Reject"
    VETO = "veto", "Veto (in the undo window)"
    WOULD_APPROVE = "would_approve", "Would approve (shadow)"
    WOULD_REJECT = "would_reject", "Would reject (shadow)"


# An approval, with or without an edit: what the count of approvals is made of.
APPROVING = (DecisionVerdict.APPROVE, DecisionVerdict.EDIT_APPROVE)


class DecisionQuerySet(models.QuerySet["Decision"]):
    def standing_on(self, digest: str) -> DecisionQuerySet:
        """The decisions that still count on the payload with `digest` (Decision.stands_on)."""
        return self.filter(~models.Q(verdict__in=APPROVING) | models.Q(payload_digest=digest))


class Decision(models.Model):
    """One human's verdict on one action."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    verdict = models.CharField(max_length=15, choices=DecisionVerdict.choices)
    comment = models.TextField(blank=True)
    edited_payload = models.JSONField(null=True, blank=True)
    payload_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="An approval's: sha256 of the canonical JSON of the exact payload it approved (approvals.digests).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DecisionQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # One decision per person per payload: a critical action's two
            # approvals of one payload come from two people by construction, and
            # an edit by another lead puts up a new payload, which someone who
            # approved the old one may decide on too (services._add_decision).
            models.UniqueConstraint(
                fields=["action", "user", "payload_digest"], name="one_decision_per_user_action_and_payload"
            ),
            models.CheckConstraint(
                condition=models.Q(verdict__in=DecisionVerdict.values), name="decision_verdict_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.get_verdict_display().lower()}"

    def stands_on(self, digest: str) -> bool:
        """Still counts on the payload with this digest: a rejection, veto or
        mark always; an approval only of that payload (an edit since made it stale)."""
        return self.verdict not in APPROVING or self.payload_digest == digest
