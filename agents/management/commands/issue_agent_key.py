from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agents.models import Agent
from agents.services import issue_key
from audit.log import Actor


class Command(BaseCommand):
    help = "Issue a new API key for an agent. The key is printed alone on the last line, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_slug")
        parser.add_argument("--label", default="", help="Where the key will be used.")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=settings.AGENT_KEY_EXPIRY_DAYS,
            help="Days until the key expires (default %(default)s, from AGENT_KEY_EXPIRY_DAYS); 0 for never.",
        )

    def handle(self, *args: Any, agent_slug: str, label: str, expires_in_days: int, **options: Any) -> None:
        agent = Agent.objects.filter(slug=agent_slug).first()
        if agent is None:
            raise CommandError(f"No agent with slug {agent_slug!r}.")
        if expires_in_days < 0:
            raise CommandError("--expires-in-days must be 0 (never) or more.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, raw = issue_key(agent, actor=Actor.system("issue_agent_key"), label=label, expires_at=expires_at)
        expiry = f"It expires on {expires_at:%Y-%m-%d %H:%M %Z}." if expires_at else "It does not expire."
        self.stderr.write(f"Issued key {key.prefix}… for {agent.slug}. {expiry} Store it now: it is not shown again.")
        self.stdout.write(raw)
