"""What a queue row says beyond its columns (approvals.reads.queue_filters.row_facts):
its one-line effect, why it cannot be approved in bulk, its accessible name."""

from __future__ import annotations

from django import template

from approvals.models import Action
from approvals.reads import queue_filters
from audit.people import Person

register = template.Library()


@register.simple_tag
def row_facts(action: Action, user: Person) -> queue_filters.RowFacts:
    return queue_filters.row_facts(action, user)
