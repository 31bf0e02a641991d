"""Alerts: storing what the detectors find, once, and acknowledging it.

`raise_alert` is the one way an alert is written. A finding is identified by
its key (kind and subject: an agent, or a department's queue):

1. While an alert with that key is open (not acknowledged), finding it again
   only counts a repeat and refreshes its message: nobody is told twice.
2. For ALERT_REPEAT_MINUTES after someone acknowledged it, finding it again
   is counted on the acknowledged alert too: acknowledging means "someone is
   on it", and a condition that persists must not reopen it every minute.
3. Otherwise a new alert is stored and sent: email to the agent's owner and
   the department's leads, and the outbound webhooks (approvals.monitoring.alert_delivery).
4. A repeat at a higher severity than the alert it repeats (say a warning
   that became a suspension) is news: it is raised and sent again.
5. After commit, every open page of the people who see it refreshes its
   alert badge (approvals.live), and the sending is queued (approvals.tasks).

Who sees an alert is approvals.reach's rule: admins, the members (leads and
backups) of its department and the owner of its agent (`visible_to`); the
same people may acknowledge it, which is audited.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from agents.models import Agent
from approvals import enqueue, live
from approvals.models import SEVERITY_RANK, Alert, Department
from approvals.reach import reach_of
from audit.log import Actor, record
from audit.people import Person


def key_for(kind: str, *, agent: Agent | None = None, department: Department | None = None, scope: str = "") -> str:
    """What makes two findings the same. `scope` narrows it, e.g. to a day for a daily budget."""
    if agent is not None:
        subject = f"agent:{agent.pk}"
    elif department is not None:
        subject = f"department:{department.pk}"
    else:
        raise ValueError("An alert is about an agent or a department.")
    return ":".join(filter(None, [kind, subject, scope]))


def visible_to(user: Person | AnonymousUser) -> QuerySet[Alert]:
    return reach_of(user).alerts_seen()


def open_count(user: Person | AnonymousUser) -> int:
    return visible_to(user).filter(acknowledged_at__isnull=True).count()


def raise_alert(
    kind: str,
    *,
    severity: str,
    message: str,
    department: Department,
    agent: Agent | None = None,
    scope: str = "",
    now: datetime | None = None,
) -> Alert:
    """Store a finding, or count it on the alert it repeats, as the module says; returns that alert."""
    now = now or timezone.now()
    key = key_for(kind, agent=agent, department=department, scope=scope)
    with transaction.atomic():
        earlier = _repeated(key, now)
        if earlier is not None and SEVERITY_RANK[severity] <= SEVERITY_RANK[earlier.severity]:
            return _count_repeat(earlier, severity, message, now)
        if earlier is not None and earlier.is_open:
            return _escalate(earlier, severity, message, now)
        try:
            with transaction.atomic():  # a savepoint: a concurrent run may have raised it meanwhile
                alert = Alert.objects.create(
                    kind=kind,
                    severity=severity,
                    department=department,
                    agent=agent,
                    key=key,
                    message=message,
                    raised_at=now,
                    last_seen_at=now,
                    notified_at=now,
                )
        except IntegrityError:
            open_alert = Alert.objects.select_for_update().get(key=key, acknowledged_at__isnull=True)
            return _count_repeat(open_alert, severity, message, now)
        _after_commit(alert, send=True)
        return alert


def _repeated(key: str, now: datetime) -> Alert | None:
    """The alert a finding with this key repeats: the open one, else one acknowledged within the quiet period."""
    quiet_since = now - timedelta(minutes=settings.ALERT_REPEAT_MINUTES)
    return (
        Alert.objects.select_for_update()
        .filter(Q(acknowledged_at__isnull=True) | Q(acknowledged_at__gte=quiet_since), key=key)
        .order_by(F("acknowledged_at").desc(nulls_first=True))
        .first()
    )


def _count_repeat(alert: Alert, severity: str, message: str, now: datetime) -> Alert:
    alert.repeats += 1
    alert.last_seen_at = now
    # A milder repeat keeps the graver words (say, that the agent was suspended).
    if severity == alert.severity:
        alert.message = message
    # Not published: a persisting finding repeats every minute, and the badge's count does not change.
    alert.save(update_fields=["repeats", "last_seen_at", "message"])
    return alert


def _escalate(alert: Alert, severity: str, message: str, now: datetime) -> Alert:
    alert.repeats += 1
    alert.severity, alert.message, alert.last_seen_at, alert.notified_at = severity, message, now, now
    alert.save(update_fields=["repeats", "severity", "message", "last_seen_at", "notified_at"])
    _after_commit(alert, send=True)
    return alert


def _after_commit(alert: Alert, *, send: bool) -> None:
    alert_id, department_id = alert.pk, alert.department_id
    owner_id = alert.agent.owner_id if alert.agent is not None else None
    # Robust: the alert is stored; a channel layer or queue that is down is logged, not raised.
    transaction.on_commit(lambda: live.publish_alert_changed(alert_id, department_id, owner_id), robust=True)
    if send:
        enqueue.call_on_commit("send_alert", alert_id)


class NotYours(LookupError):
    """No such alert among those this user sees."""


@transaction.atomic
def acknowledge(alert_id: int, *, user: Person) -> bool:
    """Mark the alert seen and handled by `user`; False when someone already had."""
    alert = visible_to(user).select_for_update(of=("self",)).select_related("agent").filter(pk=alert_id).first()
    if alert is None:
        raise NotYours(f"There is no alert {alert_id} among yours.")
    if alert.acknowledged_at is not None:
        return False
    alert.acknowledged_by, alert.acknowledged_at = user, timezone.now()
    alert.save(update_fields=["acknowledged_by", "acknowledged_at"])
    record(
        "alert.acknowledged",
        alert,
        actor=Actor.user(user),
        before={"acknowledged": False},
        after={"acknowledged": True, "kind": alert.kind, "message": alert.message},
        department_id=alert.department_id,
        agent_id=alert.agent_id,
    )
    _after_commit(alert, send=False)
    return True
