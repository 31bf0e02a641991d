"""Shared by the tests/dispatch/test_callbacks_*.py files: an agent with a key, its
callback receiver on loopback (checking signatures as the client's
verify_signature does, with the SHA-256 of the key), and proposals made
through the REST API with a callback_url."""

from __future__ import annotations

import hashlib
from typing import Any

from agents.models import Agent, Tier
from approvals.models import Action, ActionType
from tests.api.test_api_keys import api_client, new_key, post_json
from tests.support.factories import ActionTypeFactory, GrantFactory


def callback_secret(raw_key: str) -> str:
    """What an agent verifies its callbacks with: the SHA-256 (hex) of the key it proposed with."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def loopback_callbacks_allowed(settings: Any) -> None:
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.CALLBACK_ALLOW_HTTP = True  # the receiver is plain http on loopback


def granted_type(agent: Agent, **fields: Any) -> ActionType:
    action_type = ActionTypeFactory(**{"slug": "parts.ship", **fields})
    GrantFactory(agent=agent, action_type=action_type, tier=Tier.CONTRIBUTOR)
    return action_type


def propose_with_callback(raw_key: str, action_type: ActionType, callback_url: str, **payload: Any) -> Action:
    response = post_json(
        api_client(raw_key=raw_key),
        "/api/v1/actions/",
        {
            "action_type": action_type.slug,
            "payload": payload or {"note": "ship the spare part"},
            "reasoning": "The unit broke twice.",
            "callback_url": callback_url,
        },
    )
    assert response.status_code == 201, response.content
    return Action.objects.get(pk=response.json()["id"])


__all__ = ["callback_secret", "granted_type", "loopback_callbacks_allowed", "new_key", "propose_with_callback"]
