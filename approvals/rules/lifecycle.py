"""The action lifecycle: its statuses and the only moves between them.

            ┌─ blocked
propose ────┼─ shadowed
            ├─ pending ──┬─ rejected | expired | cancelled
            │            └─ approved ─┐
            └─ approved ──────────────┴─ dispatching ─┬─ succeeded ─ rollback_requested ─ rolled_back
                                                      └─ failed
"""

from __future__ import annotations

from approvals.vocabulary import Status

# Where a new proposal may start, by the policy's verdict.
INITIAL = frozenset({Status.BLOCKED, Status.SHADOWED, Status.PENDING, Status.APPROVED})

ALLOWED: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.APPROVED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED}),
    # From approved: a webhook dispatch starts; an agent-executed action is
    # reported straight to succeeded or failed; a lead vetoes in the undo window.
    Status.APPROVED: frozenset({Status.DISPATCHING, Status.SUCCEEDED, Status.FAILED, Status.REJECTED}),
    Status.DISPATCHING: frozenset({Status.SUCCEEDED, Status.FAILED}),
    Status.SUCCEEDED: frozenset({Status.ROLLBACK_REQUESTED}),
    # A rollback that fails leaves the action in effect: back to succeeded.
    Status.ROLLBACK_REQUESTED: frozenset({Status.ROLLED_BACK, Status.SUCCEEDED}),
}

TERMINAL = frozenset(set(Status.values) - set(ALLOWED))


class IllegalTransition(Exception):
    """A move the lifecycle does not allow. Nothing was changed."""

    def __init__(self, current: str, target: str, message: str | None = None) -> None:
        self.current = current
        self.target = target
        super().__init__(message or f"An action that is {Status(current).label.lower()} cannot become {target}.")


def can_move(current: str, target: str) -> bool:
    return target in ALLOWED.get(current, frozenset())


def check_move(current: str, target: str) -> None:
    if not can_move(current, target):
        raise IllegalTransition(current, target)
