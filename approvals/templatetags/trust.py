"""Words for trust metrics: rates as percentages, medians as durations."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """0.9512 → "95.1 %"; nothing to show → "—"."""
    return "—" if value is None else f"{value * 100:.1f} %"


@register.filter
def duration_words(seconds: float | None) -> str:
    """A median time to decision, to the unit a lead thinks in."""
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
