"""What drf-spectacular cannot infer: the agent key scheme."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AgentKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.AgentKeyAuthentication"
    name = "agentKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent key: `Authorization: Bearer csk_…`. Issue one with "
            "`python manage.py issue_agent_key <agent-slug>` or in the admin.",
        }
