"""Agent keys on the API: `Authorization: Bearer csk_<prefix>_<secret>`."""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from agents.models import KEY_TYPE_PREFIX, Agent, AgentKey, hash_key
from audit import context

LAST_USED_RESOLUTION = timedelta(minutes=1)
PREFIX_LENGTH = len(KEY_TYPE_PREFIX) + 8


class AgentKeyAuthentication(authentication.BaseAuthentication):
    """Looks the key up by its public prefix and compares hashes in constant
    time. Wrong, expired and revoked keys all get the same 401."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Agent, AgentKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed("Send the agent key as 'Authorization: Bearer <key>'.")
        key = self._valid_key(raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("This agent key is wrong, expired or revoked.")
        self._touch(key)
        context.update(key_prefix=key.prefix)
        return key.agent, key

    def authenticate_header(self, request: Any) -> str:
        return self.keyword

    @staticmethod
    def _valid_key(raw: str) -> AgentKey | None:
        if not raw.startswith(KEY_TYPE_PREFIX) or len(raw) <= PREFIX_LENGTH:
            return None
        key = AgentKey.objects.select_related("agent__department").filter(prefix=raw[:PREFIX_LENGTH]).first()
        if key is None or not hmac.compare_digest(key.key_hash, hash_key(raw)):
            return None
        return key if key.is_usable else None

    @staticmethod
    def _touch(key: AgentKey) -> None:
        """Record use at most once a minute per key: one write, not one per request."""
        now = timezone.now()
        if key.last_used_at is not None and key.last_used_at > now - LAST_USED_RESOLUTION:
            return
        AgentKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
