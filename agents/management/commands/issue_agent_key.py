from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.models import Agent
from agents.services import issue_key
from audit.log import Actor


class Command(BaseCommand):
    help = "Issue a new API key for an agent. The key is printed alone on the last line, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_slug")
        parser.add_argument("--label", default="", help="Where the key will be used.")

    def handle(self, *args: Any, agent_slug: str, label: str, **options: Any) -> None:
        agent = Agent.objects.filter(slug=agent_slug).first()
        if agent is None:
            raise CommandError(f"No agent with slug {agent_slug!r}.")
        key, raw = issue_key(agent, actor=Actor.system("issue_agent_key"), label=label)
        self.stderr.write(f"Issued key {key.prefix}… for {agent.slug}. Store it now: it is not shown again.")
        self.stdout.write(raw)
