"""Where a waiting action goes, how urgent it is, and when its SLA runs out.

Pure functions: approvals.services and approvals.tasks apply them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from approvals.vocabulary import Risk

if TYPE_CHECKING:
    from agents.models import Agent
    from approvals.models import ActionType, Department

# Keyed by str: callers pass the stored risk, a plain string.
RISK_WEIGHT: dict[str, int] = {Risk.LOW: 0, Risk.MEDIUM: 100, Risk.HIGH: 200, Risk.CRITICAL: 300}
# The amount's share stays below one risk step, so no amount lifts an action
# over one of a higher risk.
MAX_AMOUNT_WEIGHT = 99


def department_for(action_type: ActionType, agent: Agent) -> Department:
    """The action type's routing department, else the proposing agent's own.
    (The intake reads both with their action type and agent: no query here.)"""
    return action_type.routing_department or agent.department


def priority(risk: str, amount: Decimal | None) -> int:
    """Risk first; within a risk, larger amounts first (by order of magnitude,
    so 10,000.00 outranks 900.00 but 510.00 and 490.00 are peers).
    Age is not stored: the queue's ordering (approvals.reads.queue) puts overdue
    and older actions ahead of equally urgent newer ones."""
    magnitude = int(math.log10(float(amount) + 1) * 10) if amount else 0
    return RISK_WEIGHT.get(risk, 0) + min(magnitude, MAX_AMOUNT_WEIGHT)


def sla_deadline(proposed_at: datetime, sla: timedelta) -> datetime:
    """The SLA runs from the proposal, not from routing: a slow worker must
    not give an action extra time."""
    return proposed_at + sla
