"""The gateway's state on any page: a banner for everyone while it is
paused, and the pause switch for admins."""

from __future__ import annotations

from typing import Any

from django import template

from approvals.reach import is_admin
from approvals.services import gateway

register = template.Library()


@register.inclusion_tag("approvals/gateway.html#banner", takes_context=True)
def gateway_banner(context: template.Context) -> dict[str, Any]:
    state, user = gateway.read(), context.get("user")
    # Asked only while paused: most pages never need it.
    return {"state": state, "admin": bool(state.paused and user is not None and is_admin(user))}


@register.inclusion_tag("approvals/gateway.html#control", takes_context=True)
def gateway_control(context: template.Context) -> dict[str, Any]:
    return {"state": gateway.read(), "csrf_token": context.get("csrf_token")}
