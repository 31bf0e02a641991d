"""The global pause: the kill switch for every agent at once.

While the gateway is paused the policy blocks every proposal
(`gateway_paused`) and no dispatch that has not started starts. Pausing and
resuming are explicit acts with a reason, audited like the admin's switch.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from approvals.models import GatewayState
from approvals.services import control
from audit.log import Actor, record
from audit.people import Person


def read() -> GatewayState:
    """The state for display, without creating the row: no row means running."""
    return GatewayState.objects.select_related("changed_by").filter(pk=1).first() or GatewayState(pk=1)


@transaction.atomic
def set_paused(paused: bool, *, user: Person, reason: str) -> bool:
    """Pause or resume the gateway. False when it already was so: nothing changed."""
    reason = reason.strip()
    if not reason:
        raise ValueError(f"Say why you are {'pausing' if paused else 'resuming'} the gateway.")
    GatewayState.current()  # the row exists before it can be locked
    state = GatewayState.objects.select_for_update().get(pk=1)
    if state.paused == paused:
        return False
    state.paused, state.reason, state.changed_at, state.changed_by = paused, reason, timezone.now(), user
    state.save(update_fields=["paused", "reason", "changed_at", "changed_by"])
    record(
        "gateway.paused" if paused else "gateway.resumed",
        state,
        actor=Actor.user(user),
        before={"paused": not paused},
        after={"paused": paused, "reason": reason},
    )
    if not paused:
        transaction.on_commit(control.requeue_held, robust=True)  # what the pause held goes now
    return True
