"""The alert badge in every page's top bar; the alert socket keeps it current."""

from __future__ import annotations

from typing import Any

from django import template

from approvals.monitoring import alerts

register = template.Library()


@register.inclusion_tag("approvals/alerts.html#badge", takes_context=True)
def alert_badge(context: template.Context) -> dict[str, Any]:
    return {"open_alerts": alerts.open_count(context["user"])}
