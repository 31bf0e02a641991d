"""An agent's status and a grant's trust tier: plain choices, no ORM, shared by the
models (agents.models re-exports them) and the pure rules of approvals."""

from __future__ import annotations

from django.db import models


class AgentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    RETIRED = "retired", "Retired"


class Tier(models.TextChoices):
    OBSERVER = "observer", "Observer (shadow: never executed)"
    CONTRIBUTOR = "contributor", "Contributor (every action waits for a human)"
    EXECUTOR = "executor", "Executor (auto-approved within limits)"
