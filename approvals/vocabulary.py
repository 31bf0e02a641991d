"""The words the rules and the models share: an action's status, risk and policy
verdict, and why a tier changed. Plain choices, no ORM, so the pure rules in
approvals.rules can use them; the models store them (approvals.models re-exports them)."""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    BLOCKED = "blocked", "Blocked"
    SHADOWED = "shadowed", "Shadowed"
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    DISPATCHING = "dispatching", "Dispatching"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ROLLBACK_REQUESTED = "rollback_requested", "Rollback requested"
    ROLLED_BACK = "rolled_back", "Rolled back"


class Risk(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Verdict(models.TextChoices):
    """What the policy said when the action was proposed."""

    APPROVED = "approved", "Approved by policy"
    PENDING = "pending", "Needs a human"
    SHADOWED = "shadowed", "Shadowed (observer)"
    BLOCKED = "blocked", "Blocked"


class TierChangeReason(models.TextChoices):
    PROMOTED = "promoted", "Promoted"  # on its record, or by a person: the explanation says which
    DEMOTED = "demoted", "Demoted"
    NEW_VERSION = "new_version", "New agent version"
    OVER_CAP = "over_cap", "Above its action type's cap"
