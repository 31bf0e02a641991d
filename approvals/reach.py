"""Who reaches what: the one rule behind every door (docs/access.md).

Pages, htmx answers, the bulk approval, both sockets, the dashboards, the
agent, alert and review pages and the audit viewer ask here, and nowhere
else, what a user may see and do:

- An admin (audit.access.is_admin: the audit permission) sees everything:
  every action, agent, department, alert and audit event. Seeing is not
  deciding: an admin decides only where they lead.
- A department's members are its leads and its backups. They see its
  actions, its agents, its dashboard, its alerts and its audit events.
- A lead decides (approves, rejects, vetoes, shadow-marks, rolls back) the
  actions of their departments; a backup only once an action has escalated.
- Whoever may decide an action may open the page of the agent that proposed
  it, whatever that agent's own department.
- An owner sees their agents, their agents' actions, alerts and events, read
  only. They never decide, shadow-mark, roll back, review or move the tiers
  of their own agents, even where they lead, and never lift a suspension
  someone else imposed (a person, the circuit breaker or a detector).
- A lead of an agent's department (and an admin) suspends it; they resume it
  too, unless they own it and someone else suspended it.
- Anyone else gets a 404 for the object: its existence stays private.

Each rule is written once over a user's `Reach` (the departments they lead
and back up, read in one query): a predicate for one loaded object and, where
a list needs it, a Q / queryset built from the same sets. tests/security/test_reach_rule.py
checks each pair agrees.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db.models import Exists, OuterRef, Q, QuerySet, Value

from agents.models import Agent, AgentStatus
from approvals.models import Action, Alert, Department
from audit import access
from audit.access import is_admin
from audit.models import AuditEvent
from audit.people import Person

__all__ = ["Reach", "is_admin", "queue_q", "reach_of", "reaches_of"]


@dataclass(frozen=True)
class Reach:
    """What one user reaches: the departments they lead and back up, read once."""

    user: Person | AnonymousUser
    led: tuple[Department, ...] = ()
    backed_up: tuple[Department, ...] = ()

    @property
    def led_ids(self) -> list[int]:
        return [department.pk for department in self.led]

    @property
    def backed_up_ids(self) -> list[int]:
        return [department.pk for department in self.backed_up]

    @cached_property
    def member_ids(self) -> frozenset[int]:
        return frozenset(self.led_ids) | frozenset(self.backed_up_ids)

    @cached_property
    def admin(self) -> bool:
        # Read only when a door asks: the queue and its sockets never need it.
        return is_admin(self.user)

    def _owns(self, agent_owner_id: int | None) -> bool:
        return self.user.pk is not None and agent_owner_id == self.user.pk

    # ------------------------------------------------------------ actions

    def queues(self, action: Action) -> bool:
        """The action belongs in this user's decision lanes (the queue and its socket)."""
        return action.department_id in self.led_ids or (
            action.escalated_at is not None and action.department_id in self.backed_up_ids
        )

    def queue_q(self) -> Q:
        """queues() for a list of actions."""
        return _queue_q(self.led_ids, self.backed_up_ids)

    def decides(self, action: Action) -> bool:
        """Approve, edit and approve, reject, veto, shadow-mark, roll back:
        the queue's rule, never for the agent's owner."""
        return self.queues(action) and not self._owns(action.agent.owner_id)

    def decides_q(self) -> Q:
        return self.queue_q() & ~Q(agent__owner_id=self.user.pk)

    def sees_action(self, action: Action) -> bool:
        return self.admin or action.department_id in self.member_ids or self._owns(action.agent.owner_id)

    def actions_seen(self) -> QuerySet[Action]:
        if self.admin:
            return Action.objects.all()
        return Action.objects.filter(Q(department_id__in=self.member_ids) | Q(agent__owner_id=self.user.pk))

    # ------------------------------------------------------------ agents

    def _decides_for_agent_q(self) -> Q:
        """The agent proposed an action this user decides (or decided) for its department."""
        decided = Action.objects.filter(agent_id=OuterRef("pk")).filter(self.queue_q())
        return Q(Exists(decided))

    def agents_seen(self) -> QuerySet[Agent]:
        if self.admin:
            return Agent.objects.all()
        if self.user.pk is None:
            return Agent.objects.none()
        return Agent.objects.filter(
            Q(owner_id=self.user.pk) | Q(department_id__in=self.member_ids) | self._decides_for_agent_q()
        )

    def sees_agent(self, agent: Agent) -> bool:
        if self.admin or self._owns(agent.owner_id) or agent.department_id in self.member_ids:
            return True
        return Action.objects.filter(agent_id=agent.pk).filter(self.queue_q()).exists()

    def suspends(self, agent: Agent) -> bool:
        """Stopping is always allowed to an admin and to the leads of the agent's department."""
        return self.admin or agent.department_id in self.led_ids

    def resumes(self, agent: Agent) -> bool:
        """As suspends(), but an owner lifts only a suspension they imposed themselves."""
        if not self.suspends(agent):
            return False
        if self._owns(agent.owner_id) and agent.status == AgentStatus.SUSPENDED:
            return agent.suspended_by_id == self.user.pk
        return True

    def manages_tiers(self, agent: Agent) -> bool:
        """Evaluate on demand and promote on a recommendation: never the owner."""
        return self.suspends(agent) and not self._owns(agent.owner_id)

    def reviews(self, agent: Agent) -> bool:
        """Record the periodic review: the leads of its department and admins, never its owner."""
        return self.suspends(agent) and not self._owns(agent.owner_id)

    # ------------------------------------------------------------ departments, alerts, audit

    def sees_department(self, department: Department) -> bool:
        return self.admin or department.pk in self.member_ids

    def departments_seen(self) -> QuerySet[Department]:
        if self.admin:
            return Department.objects.all()
        return Department.objects.filter(pk__in=self.member_ids)

    def sees_alert(self, alert: Alert) -> bool:
        return self.admin or alert.department_id in self.member_ids or self._owns(_owner_id_of(alert))

    def alerts_seen(self) -> QuerySet[Alert]:
        if self.admin:
            return Alert.objects.all()
        return Alert.objects.filter(Q(department_id__in=self.member_ids) | Q(agent__owner_id=self.user.pk))

    def reads_event(self, event: AuditEvent) -> bool:
        return access.may_read_event(self.user, event)

    def events_read(self) -> QuerySet[AuditEvent]:
        return access.readable_events(self.user)


def queue_q(user: Person, reach: Reach | None = None) -> Q:
    """The queue's rule as a filter on actions. Without `reach`, the
    departments are subqueries, so a one-off read stays one query; with it,
    they are literal ids, which lets the database walk the pending index of a
    department in queue order instead of sorting all its rows."""
    if reach is None:
        return _queue_q(led_department_ids(user), backed_up_department_ids(user))
    return reach.queue_q()


def _queue_q(led: Any, backed_up: Any) -> Q:
    # The departments as subqueries or as literal ids (queue_q says why both).
    return Q(department_id__in=led) | Q(department_id__in=backed_up, escalated_at__isnull=False)


def _owner_id_of(alert: Alert) -> int | None:
    return alert.agent.owner_id if alert.agent is not None else None


def reach_of(user: Person | AnonymousUser) -> Reach:
    """The departments the user leads and backs up, in one query (none when anonymous)."""
    if user is None or not user.is_authenticated:
        return Reach(user=user)
    leads = Department.leads.through.objects.filter(user_id=user.pk, department=OuterRef("pk"))
    backups = Department.backup_approvers.through.objects.filter(user_id=user.pk, department=OuterRef("pk"))
    departments = list(
        Department.objects.annotate(is_led=Exists(leads), is_backup=Exists(backups))
        .filter(Q(is_led=True) | Q(is_backup=True))
        .order_by("pk")
    )
    return Reach(
        user=user,
        led=tuple(d for d in departments if d.is_led),
        backed_up=tuple(d for d in departments if d.is_backup),
    )


def reaches_of(users: Iterable[Person], within: int | None = None) -> dict[int, Reach]:
    """reach_of for many users at once, in two queries: the live queue's
    fan-out. The memberships are read as ids, and each department once,
    shared by every reach that holds it (a thousand leads of one department
    are a thousand rows of ids, not a thousand Department objects).

    With `within`, a department all of them heard of, the users are picked
    by their membership of it in the query itself, not by a list of their
    ids (hundreds of parameters to build and send on every change); those
    no longer members of it get an empty reach."""
    by_id = {user.pk: user for user in users}
    if within is None:
        whose = Q(user_id__in=by_id)
    else:
        whose = Q(user_id__in=_members_of(Department.leads.through, within)) | Q(
            user_id__in=_members_of(Department.backup_approvers.through, within)
        )
    led: defaultdict[int, list[int]] = defaultdict(list)
    backed_up: defaultdict[int, list[int]] = defaultdict(list)
    leading = Department.leads.through.objects.filter(whose)
    backing = Department.backup_approvers.through.objects.filter(whose)
    memberships = leading.values_list("user_id", "department_id", Value(True)).union(
        backing.values_list("user_id", "department_id", Value(False)), all=True
    )
    for user_id, department_id, leads in memberships.order_by("department_id"):
        if user_id in by_id:  # with `within`, its members elsewhere are read too
            (led if leads else backed_up)[user_id].append(department_id)
    departments = Department.objects.in_bulk({pk for ids in (*led.values(), *backed_up.values()) for pk in ids})

    def held(ids: list[int]) -> tuple[Department, ...]:
        # A department deleted between the two reads takes its memberships with it.
        return tuple(departments[pk] for pk in ids if pk in departments)

    return {
        user_id: Reach(user=user, led=held(led[user_id]), backed_up=held(backed_up[user_id]))
        for user_id, user in by_id.items()
    }


def _members_of(through: Any, department_id: int) -> QuerySet[Any]:
    return through.objects.filter(department_id=department_id).values("user_id")


# ---------------------------------------------------------------- membership, and the audit trail's directory


def led_department_ids(user: Person) -> QuerySet[Any]:
    """The departments `user` leads, as a subquery of ids."""
    return Department.leads.through.objects.filter(user_id=user.pk).values("department_id")


def backed_up_department_ids(user: Person) -> QuerySet[Any]:
    """The departments `user` backs up, as a subquery of ids."""
    return Department.backup_approvers.through.objects.filter(user_id=user.pk).values("department_id")


class AuditDirectory:
    """What the audit trail (audit.access) asks of approvals: who is a member of
    which department, who owns which agent. Provided at start-up (approvals.apps)."""

    def member_department_ids(self, user: Person) -> list[int]:
        members = Q(pk__in=led_department_ids(user)) | Q(pk__in=backed_up_department_ids(user))
        return list(Department.objects.filter(members).values_list("pk", flat=True).order_by("pk"))

    def owned_agent_ids(self, user: Person) -> QuerySet[Any]:
        return Agent.objects.filter(owner_id=user.pk).values("pk")

    def agent_id(self, slug: str) -> int | None:
        return Agent.objects.filter(slug=slug).values_list("pk", flat=True).first()

    def departments(self, ids: Iterable[int] | None) -> list[tuple[int, str]]:
        chosen = Department.objects.all() if ids is None else Department.objects.filter(pk__in=ids)
        return [(department.pk, str(department)) for department in chosen.order_by("name")]
