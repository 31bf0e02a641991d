"""The brake on password guessing: django-axes' backend, first in
AUTHENTICATION_BACKENDS, refuses a locked-out user name and address before
any password is checked (settings: LOGIN_FAILURE_LIMIT, LOGIN_COOLOFF_MINUTES)."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginGuard(AxesStandaloneBackend):
    """Every login door (the login page, the admin's) authenticates with its
    request, which carries the address the lock is keyed by. A call without
    one (a script, a test client's login()) has no address and nothing to
    brake: it goes on to the next backend instead of failing."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
