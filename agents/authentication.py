"""Agent keys on the API: `Authorization: Bearer csk_<prefix>_<secret>`."""

from __future__ import annotations

import copy
import hmac
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from agents import fresh
from agents.models import KEY_TYPE_PREFIX, Agent, AgentKey, hash_key
from audit import context

LAST_USED_RESOLUTION = timedelta(minutes=1)
PREFIX_LENGTH = len(KEY_TYPE_PREFIX) + 8

# Keys by prefix, with their agent and its department: read on every request,
# changed rarely; a revocation or suspension reaches every server within a second (agents.fresh).
recent_keys: fresh.Recent[AgentKey] = fresh.Recent()


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
        prefix = raw[:PREFIX_LENGTH]
        cached = recent_keys.get(
            prefix, lambda: AgentKey.objects.select_related("agent__department").filter(prefix=prefix).first()
        )
        if cached is None or not hmac.compare_digest(cached.key_hash, hash_key(raw)):
            return None
        return _own_copy(cached) if cached.is_usable else None

    @staticmethod
    def _touch(key: AgentKey) -> None:
        """Record use at most once a minute per key: one write, not one per request."""
        now = timezone.now()
        if key.last_used_at is not None and key.last_used_at > now - LAST_USED_RESOLUTION:
            return
        AgentKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update_unannounced(last_used_at=now)
        # The cached key too, so the next minute's requests skip the write (not an
        # announced change: no request decides anything by it).
        cached = recent_keys.peek(key.prefix)
        if cached is not None:
            cached.last_used_at = now


def _own_copy(key: AgentKey) -> AgentKey:
    """The request's own key and agent: a service may change the agent it is handed
    (agents.services.set_status does), which must not reach the cached one."""
    mine = copy.copy(key)
    mine.agent = copy.copy(key.agent)
    return mine
