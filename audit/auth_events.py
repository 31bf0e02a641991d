"""Logins and login lockouts into the audit trail.

Django reports logins only through its auth signals, and django-axes its
lockouts through its own, so this is the one place the project listens to
signals (connected in AuditConfig.ready). A failed login is not an audit
event: guesses would flood the permanent trail, and django-axes counts them
(approvals.login_guard). The lockout they lead to is one."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from audit.log import Actor, record
from audit.people import Person


def on_login(sender: Any, request: HttpRequest, user: Person, **kwargs: Any) -> None:
    record("auth.login", user, actor=Actor.user(user))


def on_locked_out(sender: Any, request: Any, username: str | None, ip_address: str | None, **kwargs: Any) -> None:
    # django-axes signals a lockout when a failure reaches the limit, and
    # again for every try while it lasts; only the first has counted the
    # failures (axes_failures_since_start), so the trail holds one event per lockout.
    if getattr(request, "axes_failures_since_start", None) is None:
        return
    # Never the password: only the name that was tried, and where from.
    attempted = str(username or "")[:150]
    record(
        "auth.locked_out",
        None,
        actor=Actor("user", "", attempted),
        after={"username": attempted, "ip_address": ip_address, "failures": request.axes_failures_since_start},
    )
