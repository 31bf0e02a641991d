"""Where a waiting action goes, how urgent it is, and when its SLA runs out."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

from approvals.models import Risk

RISK_WEIGHT = {Risk.LOW: 0, Risk.MEDIUM: 100, Risk.HIGH: 200, Risk.CRITICAL: 300}


def priority(risk: str, amount: Decimal | None) -> int:
    """Risk first; within a risk, larger amounts first (by order of magnitude,
    so 10,000.00 outranks 900.00 but 510.00 and 490.00 are peers).
    Age breaks ties in the queue's ordering."""
    magnitude = int(math.log10(float(amount) + 1) * 10) if amount else 0
    return RISK_WEIGHT.get(risk, 0) + min(magnitude, 99)


def sla_deadline(proposed_at: datetime, sla: timedelta) -> datetime:
    return proposed_at + sla
