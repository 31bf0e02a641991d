"""Logins and failed logins into the audit trail.

Django reports these only through its auth signals, so this is the one place
the project listens to signals (connected in AuditConfig.ready)."""

from __future__ import annotations

from typing import Any

from audit.log import Actor, record


def on_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record("auth.login", user, actor=Actor.user(user))


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # Never the password: only the name that was tried.
    attempted = str(credentials.get("username", ""))[:150]
    record("auth.login_failed", None, actor=Actor("user", "", attempted), after={"username": attempted})
