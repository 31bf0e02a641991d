"""Departments: who leads and backs up a part of the organisation, and its queue's rules."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models

from agents import fresh


class Department(models.Model):
    """A team whose leads decide the actions routed to it."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(unique=True)
    leads = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="led_departments", blank=True)
    backup_approvers = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="backup_departments",
        blank=True,
        help_text="Decide this department's actions once they are past the decision SLA.",
    )
    decision_sla_minutes = models.PositiveIntegerField(
        default=240, help_text="How long an action may wait for a decision before it escalates."
    )
    slack_channel = models.CharField(
        max_length=80,
        blank=True,
        help_text="Slack channel ID (e.g. C0123ABCD) where its new pending actions are posted; empty: none.",
    )

    # Cached by the API (agents.fresh): a bulk update announces, as a save does.
    objects = fresh.AnnouncingQuerySet["Department"].as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def decision_sla(self) -> timedelta:
        return timedelta(minutes=self.decision_sla_minutes)
