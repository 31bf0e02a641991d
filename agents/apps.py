from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        # Django's way: models import only once the apps are loaded, so here.
        from agents import fresh
        from agents.models import Agent, AgentKey

        fresh.announce_changes_of(Agent, AgentKey)
