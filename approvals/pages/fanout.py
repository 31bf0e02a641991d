"""The live queue's fan-out: what every open queue page of a process needs
to hear about one changed action, read and rendered once for all of them.

A change reaches every socket of the action's department. Reading and
rendering per socket cost ~7 ms each, one after another in the process's
single database thread, so with 25 leads on a worker the last one waited
for 24 others. Here the first socket to get a message reads the action, its
decisions, the leads' departments and the counters once, renders one
fragment per kind of lead (lane, owner or not, own decision, departments)
and hands every socket of the process its fragment; the others await it.

Who may see what is still decided per lead, per message, from the
database, by approvals.reach's queue rule: a lead removed from a department
since their socket opened gets nothing more of it.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, NamedTuple

from channels.db import database_sync_to_async
from django.template.loader import render_to_string
from django.utils import timezone

from approvals import reach as reach_rule
from approvals.models import APPROVING, Action, Decision
from approvals.reads import queue
from audit.people import Person

# How long a message's shared result is kept for sockets still catching up.
RESULT_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class Viewer:
    """One open queue page: its channel, its lead and its lane."""

    channel: str
    user: Person
    lane: queue.Lane


class LeadPart(NamedTuple):
    """A lead's own part in an action's row: their agent, their decision."""

    owns_agent: bool
    approved: bool
    mark: str | None  # the verdict of their decision, if any


def updates_for(action_id: str, viewers: list[Viewer]) -> dict[str, str | None]:
    """The fragment each viewer's page needs about one action, by channel;
    None for a viewer who decides for neither the action's department nor
    (as a backup) its escalation. Queries: the action, its decisions, the
    viewers' departments (two), and two counts per distinct set of departments."""
    now = timezone.now()
    action = (
        Action.objects.select_related("agent", "action_type")
        .annotate(is_escalated=queue.IS_ESCALATED)
        .filter(pk=action_id)
        .first()
    )
    if action is None:
        return dict.fromkeys((viewer.channel for viewer in viewers), None)
    # Only approvals of the standing payload count (an edit restarts the count).
    standing = action.standing_digest
    verdicts_by_user: dict[int, list[str]] = defaultdict(list)
    for decision in Decision.objects.filter(action_id=action.pk).standing_on(standing).only("user", "verdict"):
        verdicts_by_user[decision.user_id].append(decision.verdict)
    approvals = sum(any(verdict in APPROVING for verdict in verdicts) for verdicts in verdicts_by_user.values())
    reaches = reach_rule.reaches_of(viewer.user for viewer in viewers)
    counts: dict[tuple, queue.QueueCounts] = {}
    rendered: dict[tuple, str] = {}
    updates: dict[str, str | None] = {}
    for viewer in viewers:
        reach = reaches[viewer.user.pk]
        departments = (frozenset(reach.led_ids), frozenset(reach.backed_up_ids))
        if action.department_id not in reach.member_ids:
            updates[viewer.channel] = None
            continue
        # A member who no longer (or not yet) has it in their lanes gets its removal.
        visible = reach.queues(action)
        mine = verdicts_by_user.get(viewer.user.pk, [])
        part = LeadPart(
            owns_agent=action.agent.owner_id == viewer.user.pk,
            approved=any(verdict in APPROVING for verdict in mine),
            mark=mine[0] if mine else None,
        )
        # Keyed on what makes one lead's fragment differ from another's, each kind is rendered once.
        variant = (viewer.lane, visible, part, departments)
        if variant not in rendered:
            if departments not in counts:
                counts[departments] = queue.counts_for(viewer.user, now, reach)
            row = _as_seen_by(action, approvals, part) if visible else None
            place = queue.place_of(row, now) if row else None
            context = {
                "user": viewer.user,
                "action": row,
                "action_id": action_id,
                "place": place,
                "lane": viewer.lane,
                "lane_places": queue.PLACES_BY_LANE[viewer.lane],
                "now": now,
                "counts": counts[departments],
            }
            rendered[variant] = render_to_string("approvals/queue.html#live-update", context).strip()
        updates[viewer.channel] = rendered[variant]
    return updates


def _as_seen_by(action: Action, approvals: int, part: LeadPart) -> Action:
    """The action with the row's per-lead annotations, as queue._annotated sets them."""
    row = copy.copy(action)
    # Instance attributes, as annotate() sets them; no model field declares them, hence vars().
    vars(row).update(approvals=approvals, approved_by_me=part.approved, my_mark=part.mark)
    return row


class ProcessFanout:
    """The sockets of this process, and one shared computation per message."""

    def __init__(self) -> None:
        self.viewers: dict[str, tuple[Viewer, frozenset[int]]] = {}
        self._results: dict[str, asyncio.Future[dict[str, str | None]]] = {}

    def join(self, viewer: Viewer, department_ids: list[int]) -> None:
        self.viewers[viewer.channel] = (viewer, frozenset(department_ids))

    def leave(self, channel: str) -> None:
        self.viewers.pop(channel, None)

    async def update_for(self, channel: str, event: dict[str, Any]) -> str | None:
        """This socket's fragment for one message (see updates_for)."""
        joined = self.viewers.get(channel)
        if joined is None:
            return None
        key = event["event"]
        result = self._results.get(key)
        if result is None:
            # Every socket of this process that the department's group reaches.
            department_id = event["department_id"]
            viewers = [viewer for viewer, departments in self.viewers.values() if department_id in departments]
            result = self._results[key] = asyncio.ensure_future(_updates_for(event["action_id"], viewers))
            asyncio.get_running_loop().call_later(RESULT_TTL_SECONDS, self._results.pop, key, None)
        # Shielded: a socket closing while it waits must not cancel the others' result.
        updates = await asyncio.shield(result)
        if channel not in updates:  # joined after the shared read began
            updates = await _updates_for(event["action_id"], [joined[0]])
        return updates[channel]


_updates_for = database_sync_to_async(updates_for)

# One per process (per event loop: uvicorn runs one loop a worker process).
this_process = ProcessFanout()
