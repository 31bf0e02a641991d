"""The top bar marks the page the reader is on (aria-current), for eyes and screen readers alike."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Which pages each link of the top bar stands for.
SECTIONS = {
    "queue": ("queue",),
    "shadow": ("queue",),
    "agents": ("agent-list", "agent-detail", "agent-reviews", "reviews-due"),
    "dashboard": ("dashboard", "department-dashboard"),
    "audit": ("audit",),
    "settings": ("lead-settings",),
}


@register.simple_tag(takes_context=True)
def current(context: dict[str, Any], section: str) -> SafeString:
    """` aria-current="page"` on the link of the section being shown, else nothing."""
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    if request is None or match is None or match.url_name not in SECTIONS.get(section, ()):
        return mark_safe("")
    if match.url_name == "queue" and (request.GET.get("lane") == "shadow") != (section == "shadow"):
        return mark_safe("")
    return mark_safe(' aria-current="page"')
