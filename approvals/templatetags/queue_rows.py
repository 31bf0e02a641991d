"""What a queue row says about its action: the one-line effect (approvals.previews)
and why it cannot be approved in bulk (approvals.queue_filters)."""

from __future__ import annotations

from typing import Any

from django import template

from approvals import previews, queue_filters
from approvals.models import Action

register = template.Library()


@register.filter
def effect(action: Action) -> str:
    return previews.summary_of(action.action_type, action.effective_payload)


@register.simple_tag
def bulk_refusal(action: Action, user: Any) -> str:
    return queue_filters.bulk_refusal(action, user)
