"""The gateway's global switches (the pause)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class GatewayState(models.Model):
    """The single row holding the global pause (the kill switch for every agent)."""

    paused = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = "gateway state"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="gateway_state_singleton")]

    def __str__(self) -> str:
        return "Gateway paused" if self.paused else "Gateway running"

    @classmethod
    def current(cls) -> GatewayState:
        state, _ = cls.objects.get_or_create(id=1)
        return state
