"""The gateway's state on any page: a banner for everyone while it is
paused, and the pause switch for admins."""

from __future__ import annotations

from typing import Any

from django import template

from approvals import gateway

register = template.Library()


@register.inclusion_tag("approvals/gateway.html#banner", takes_context=True)
def gateway_banner(context: template.Context) -> dict[str, Any]:
    return {"state": gateway.read(), "user": context.get("user")}


@register.inclusion_tag("approvals/gateway.html#control", takes_context=True)
def gateway_control(context: template.Context) -> dict[str, Any]:
    return {"state": gateway.read(), "csrf_token": context.get("csrf_token")}
