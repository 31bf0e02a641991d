"""What a queue row says beyond its columns (approvals.queue_filters.row_facts):
its one-line effect, why it cannot be approved in bulk, its accessible name."""

from __future__ import annotations

from typing import Any

from django import template

from approvals import queue_filters
from approvals.models import Action

register = template.Library()


@register.simple_tag
def row_facts(action: Action, user: Any) -> queue_filters.RowFacts:
    return queue_filters.row_facts(action, user)
