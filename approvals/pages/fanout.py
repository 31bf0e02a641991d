"""The live queue's fan-out: how a changed action reaches every open queue
page of a process, read and rendered once for all of them.

A process listens once: one channel of its own in the channel layer, in the
group of each department one of its sockets decides for. A group holds one
member per process, not one per socket, so a change is one message per
process and a closed socket leaves nothing behind in the layer. Each change
is read and rendered once: the action, its decisions, the leads' departments
and the counters, one fragment per kind of lead (lane, owner or not, own
decision, departments). The listener sends each socket its fragment itself,
through the socket's outbox: at once while the connection takes it, in a
task of the socket's own while it is slow, in order either way. (Through the
consumer's own loop, each frame cost three task switches per socket, the
larger part of a change to a thousand of them.)

Who may see what is still decided per lead, per message, from the
database, by approvals.reach's queue rule: a lead removed from a department
since their socket opened gets nothing more of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import weakref
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, NamedTuple

from channels.db import database_sync_to_async
from django.template.loader import render_to_string
from django.utils import timezone

from approvals import live
from approvals import reach as reach_rule
from approvals.models import APPROVING, Action, Decision
from approvals.pages.socket_outage import LAYER_DOWN
from approvals.reads import queue
from audit.people import Person

log = logging.getLogger(__name__)

# How often a process renews its memberships: well inside the layer's group
# expiry (a day by default, for channels_redis and the in-memory layer alike).
GROUP_REFRESH_SECONDS = 3600.0


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
    reaches = reach_rule.reaches_of((viewer.user for viewer in viewers), within=action.department_id)
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


class Outbox:
    """The frames the listener sends one socket, in the order they came.

    A frame is sent at once, within the listener's turn, while the socket's
    connection takes it (its write buffer has room: nearly always). A send
    that has to wait (a slow reader, a full buffer) carries on in a task of
    the socket's own, which sends the frames that come meanwhile after it;
    the listener goes on to the other sockets. Frames are held until the
    socket has said hello (`open`)."""

    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self._send = send
        self._waiting: deque[str] = deque()
        self._held = True
        self._busy = False  # a drain is under way (at once, or in `_slow`)
        self._slow: asyncio.Task[None] | None = None

    def put(self, html: str) -> None:
        self._waiting.append(html)
        if not self._held and not self._busy:
            self._drain_soon()

    def open(self) -> None:
        self._held = False
        if not self._busy:
            self._drain_soon()

    def close(self) -> None:
        self._held = True
        self._waiting.clear()
        if self._slow is not None:
            self._slow.cancel()

    def _drain_soon(self) -> None:
        self._busy = True
        self._slow = start_eagerly(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._send(self._waiting.popleft())
        except Exception:
            # The connection went (its disconnect removes the socket): nothing
            # more can reach this page, which re-syncs when it reconnects.
            log.debug("A queue socket's send failed; its frames are dropped.", exc_info=True)
            self._waiting.clear()
        finally:
            self._busy = False


def start_eagerly(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `coroutine` now, in the caller's turn, up to its first wait, and
    go on in a task only if it waits: None when it finished at once. (What
    Python 3.12's eager tasks do; a task per frame per socket costs as much
    as the send itself.)"""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_go_on(coroutine, waiting_on))


async def _go_on(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    await _Resumed(coroutine, waiting_on)


class _Resumed:
    """Awaiting it resumes a coroutine stopped at its first wait: what `await`
    does from there on, handing on what the loop sends and throws in."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.coroutine, self.waiting_on = coroutine, waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        waiting_on = self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as thrown:  # a cancellation, above all
                try:
                    waiting_on = self.coroutine.throw(thrown)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = self.coroutine.send(sent)
                except StopIteration:
                    return


class Joined(NamedTuple):
    """A viewer as this process holds it: the departments its socket hears of,
    its outbox (the frames), and its inbox (what the consumer reads instead of
    a channel of its own: the layer's loss, a change that could not render)."""

    viewer: Viewer
    departments: frozenset[int]
    outbox: Outbox
    inbox: asyncio.Queue[dict[str, Any]]


class ProcessFanout:
    """The queue sockets of one process and its one listener on the channel
    layer: one channel in the group of each department a socket decides for,
    one read and render per change (updates_for), and each socket's fragment
    put in its inbox, in the order the changes came."""

    def __init__(self, layer: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.layer, self.loop = layer, loop
        self.viewers: dict[str, Joined] = {}
        self.by_department: dict[int, dict[str, Joined]] = {}
        self.channel: str | None = None  # this process's channel in the layer
        self.groups: set[int] = set()  # the departments whose group holds it
        self.listener: asyncio.Task[None] | None = None
        self._settling = asyncio.Lock()

    async def join(
        self, viewer: Viewer, department_ids: list[int], outbox: Outbox, inbox: asyncio.Queue[dict[str, Any]]
    ) -> None:
        """Hear of the departments' changes from now on. Raises what the layer
        raises when it does not answer (approvals.pages.socket_outage)."""
        joined = self.viewers[viewer.channel] = Joined(viewer, frozenset(department_ids), outbox, inbox)
        for department_id in joined.departments:
            self.by_department.setdefault(department_id, {})[viewer.channel] = joined
        try:
            await self._settle()
        except BaseException:
            self._forget(viewer.channel)
            raise

    async def leave(self, channel: str) -> None:
        if self._forget(channel):
            await self._settle()

    def _forget(self, channel: str) -> bool:
        joined = self.viewers.pop(channel, None)
        if joined is None:
            return False
        joined.outbox.close()
        for department_id in joined.departments:
            hearing = self.by_department[department_id]
            del hearing[channel]
            if not hearing:
                del self.by_department[department_id]
        return True

    async def _settle(self) -> None:
        """Make the layer match the open sockets: the process's channel in the
        group of every department one of them decides for and in no other, and
        a listener while any is open."""
        async with self._settling:
            wanted = set(self.by_department)
            if self.channel is None:
                self.channel = await self.layer.new_channel()
            for department_id in sorted(wanted - self.groups):
                await self.layer.group_add(live.department_group(department_id), self.channel)
                self.groups.add(department_id)
            for department_id in sorted(self.groups - wanted):
                await self.layer.group_discard(live.department_group(department_id), self.channel)
                self.groups.discard(department_id)
            if self.viewers and (self.listener is None or self.listener.done()):
                self.listener = self.loop.create_task(self._serve())
            elif not self.viewers and self.listener is not None:
                self.listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.listener
                self.listener = None

    async def _serve(self) -> None:
        renewing = self.loop.create_task(self._renew())
        try:
            await self._listen()
        finally:
            renewing.cancel()

    async def _listen(self) -> None:
        """Every change of the departments, one after another (so each socket
        gets them in order). A layer that stops answering closes every socket
        with 1013: their pages reconnect and re-sync, joining the groups again.
        Never under a time-out: a read cancelled mid-way can lose a message."""
        assert self.channel is not None
        try:
            while True:
                message = await self.layer.receive(self.channel)
                if message.get("type") == "action.changed":
                    await self._fan_out(message)
        except LAYER_DOWN:
            self.groups.clear()  # unknown now: the next socket to join adds them again
            for joined in self.viewers.values():
                joined.inbox.put_nowait({"type": "layer.unreachable"})

    async def _renew(self) -> None:
        """The layer forgets a membership a day after it was added (its group
        expiry); a process that always has a socket open renews its own."""
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            async with self._settling:
                for department_id in sorted(self.groups):
                    with contextlib.suppress(*LAYER_DOWN):  # the listener hears of it, and acts
                        await self.layer.group_add(live.department_group(department_id), self.channel)

    async def _fan_out(self, message: dict[str, Any]) -> None:
        hearing = list(self.by_department.get(message["department_id"], {}).values())
        if not hearing:
            return
        try:
            updates = await _updates_for(message["action_id"], [joined.viewer for joined in hearing])
        except Exception:
            # Their rows would be stale: the sockets start over (reconnect and re-sync).
            log.exception("The live queue could not render action %s; its sockets re-sync.", message["action_id"])
            for joined in hearing:
                joined.inbox.put_nowait({"type": "queue.missed"})
            return
        for joined in hearing:
            html = updates[joined.viewer.channel]
            if html is not None:
                joined.outbox.put(html)


_updates_for = database_sync_to_async(updates_for)

# One per channel layer and event loop: uvicorn runs one loop a worker
# process; tests run one per test, and change the layer in settings.
_by_layer: weakref.WeakKeyDictionary[Any, ProcessFanout] = weakref.WeakKeyDictionary()


def of_this_process(layer: Any) -> ProcessFanout:
    loop = asyncio.get_running_loop()
    fanout = _by_layer.get(layer)
    if fanout is None or fanout.loop is not loop:
        fanout = _by_layer[layer] = ProcessFanout(layer, loop)
    return fanout
