"""The type of a person who uses the product: a lead, a backup, an owner, an admin.

Named once, here at the bottom of the imports (approvals → agents → audit), so
every signature that takes a person says the same thing. The project keeps
Django's user model (no AUTH_USER_MODEL), so a person is a
`django.contrib.auth.models.User`; should that change, this alias changes with it.

A page's `request.user` may also be Django's `AnonymousUser`: functions that
answer for a visitor who has not signed in take `Person | AnonymousUser`.
Agents are not people: on the API and the MCP door the authenticated party is
an `agents.models.Agent`.
"""

from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.models import User
from django.http import HttpRequest

Person: TypeAlias = User


class AuthenticatedHttpRequest(HttpRequest):
    """The request a view behind @login_required sees: its user has signed in.

    For annotations only: Django builds the request; this narrows its `user`.
    """

    user: Person


def person_of(request: HttpRequest) -> Person:
    """The person behind a request that a door in front already let in only
    signed in: the admin site (active staff) or @login_required. Narrows the
    type where the view's signature cannot say so (the admin's hooks take a
    plain HttpRequest)."""
    user = request.user
    assert user.is_authenticated, "a signed-in view was reached without signing in"
    return user
