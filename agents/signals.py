"""What agents tells the apps above it. Imports flow approvals → agents, so
a change here that approvals must act on is announced, never called."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the commit that put an agent back to `active` (keyword: agent_id).
# approvals re-queues the dispatches the suspension held.
agent_resumed = Signal()
