"""Create, or bring back in line, the demo organisation of approvals.demo.organisation.

Reference data (people, departments, action types, agents' descriptions) is
set to what approvals.demo.organisation declares. Live state is only created when missing:
a grant's tier and limits, once they exist, change through promotions and the
admin, and an agent's status through suspend/resume, all of which are audited;
re-seeding must not silently undo them. Demo actions are proposed through
approvals.services, like any agent's, and only into an empty demo.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.utils import timezone

from agents.models import Agent, Grant
from approvals import services
from approvals.demo import history as demo_history
from approvals.demo import organisation as demo
from approvals.models import Action, ActionType, Department, Executor, GatewayState
from audit import chain
from audit.log import Actor, record

User = get_user_model()
ACTOR = Actor.system("seed_demo")


def _upsert(
    model: type[models.Model], lookup: dict[str, Any], values: dict[str, Any], on_create: dict[str, Any] | None = None
) -> Any:
    """update_or_create, but through full_clean, so the models' own rules
    (valid JSON Schema, no executor tier on high risk) hold for demo data too.
    `on_create` values are only set on a new row."""
    obj = model._default_manager.filter(**lookup).first()
    if obj is None:
        obj = model(**lookup, **(on_create or {}))
    for name, value in values.items():
        setattr(obj, name, value)
    obj.full_clean()
    obj.save()
    return obj


def seed_people(password: str) -> dict[str, Any]:
    # Everyone shares one printed password, so one (deliberately slow) hash serves them all.
    hashed = make_password(password)
    users = {}
    for person in demo.PEOPLE:
        user, _ = User.objects.update_or_create(
            username=person.username,
            defaults={
                "first_name": person.first_name,
                "last_name": person.last_name,
                "email": f"{person.username}@{demo.EMAIL_DOMAIN}",
                "is_active": True,
                "is_staff": person.admin,
                "is_superuser": person.admin,
                "password": hashed,
            },
        )
        users[person.username] = user
    return users


def seed_departments(users: dict[str, Any]) -> dict[str, Department]:
    departments = {}
    for team in demo.TEAMS:
        department = _upsert(
            Department, {"slug": team.slug}, {"name": team.name, "decision_sla_minutes": team.sla_minutes}
        )
        # add, never set: leads an admin appointed since stay in place.
        department.leads.add(*(users[name] for name in team.leads))
        department.backup_approvers.add(*(users[name] for name in team.backups))
        departments[team.slug] = department
    return departments


def _executor(capability: demo.Capability) -> dict[str, Any]:
    """Webhooks to the built-in demo target (approvals.demo.target) for the capabilities that have one;
    the others are executed by their agents, which report back."""
    if capability.demo_target is None or not settings.DEMO_TARGET:
        return {"executor": Executor.AGENT, "webhook_url": "", "rollback_url": ""}
    url = f"{settings.SITE_URL.rstrip('/')}/demo-target/{capability.demo_target}/{capability.slug}/"
    return {"executor": Executor.WEBHOOK, "webhook_url": url, "rollback_url": f"{url}rollback/"}


def seed_action_types(departments: dict[str, Department]) -> dict[str, ActionType]:
    action_types = {}
    for capability in demo.CAPABILITIES:
        action_type = _upsert(
            ActionType,
            {"slug": capability.slug},
            {
                "name": capability.name,
                "description": capability.description,
                "risk": capability.risk,
                "reversible": capability.reversible,
                "reversal_window_minutes": capability.reversal_window_minutes,
                "undo_window_seconds": capability.undo_window_seconds,
                "expiry_hours": capability.expiry_hours,
                "payload_schema": capability.schema,
                "amount_path": capability.amount_path,
                "currency_path": capability.currency_path,
                "routing_department": departments[capability.routed_to] if capability.routed_to else None,
            },
            # Set once: re-seeding must not unplug (or re-plug) what an admin wired since.
            on_create=_executor(capability),
        )
        action_types[capability.slug] = action_type
    return action_types


def seed_agents(
    users: dict[str, Any], departments: dict[str, Department], action_types: dict[str, ActionType]
) -> tuple[dict[str, Agent], int]:
    """The agents and their grants; returns them and how many grants were new."""
    agents, new_grants = {}, 0
    for bot in demo.BOTS:
        agent = _upsert(
            Agent,
            {"slug": bot.slug},
            {
                "name": bot.name,
                "owner": users[bot.owner],
                "department": departments[bot.department],
                "purpose": bot.purpose,
                "version": bot.version,
            },
        )
        agents[bot.slug] = agent
        for permit in bot.grants:
            new_grants += _grant_once(agent, action_types[permit.action_type], permit)
    return agents, new_grants


def _grant_once(agent: Agent, action_type: ActionType, permit: demo.Permit) -> bool:
    if Grant.objects.filter(agent=agent, action_type=action_type).exists():
        return False
    terms = asdict(permit)
    del terms["action_type"], terms["started_as"]  # the slug (the row gets the object); the history's
    _upsert(Grant, {"agent": agent, "action_type": action_type}, terms)
    return True


def have_acted(agents: dict[str, Agent]) -> bool:
    return Action.objects.filter(agent__in=agents.values()).exists()


def seed_actions(agents: dict[str, Agent], action_types: dict[str, ActionType]) -> list[Action]:
    """Propose today's demo actions (the caller checks the demo agents had not acted before)."""
    actions = []
    for proposal in demo.PROPOSALS:
        agent = agents[proposal.agent]
        action, _ = services.propose(
            agent,
            action_types[proposal.action_type],
            payload=proposal.payload,
            reasoning=proposal.reasoning,
            confidence=proposal.confidence,
            amount=proposal.amount,
            context={**proposal.context, "agent_version": agent.version},
            idempotency_key=proposal.key,
        )
        actions.append(action)
    return actions


class Command(BaseCommand):
    help = "Create the demo organisation: people, departments, action types, agents, grants and a few actions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password", default=demo.DEFAULT_PASSWORD, help="Password of every demo user (reset on each run)."
        )
        parser.add_argument(
            "--history-days",
            type=int,
            default=demo.HISTORY_DAYS,
            help=f"Days of past activity to write into an empty demo (default {demo.HISTORY_DAYS}; 0: none).",
        )

    def handle(self, *args: Any, password: str, history_days: int, **options: Any) -> None:
        if not password.strip():
            raise CommandError("The demo password may not be empty.")
        if not 0 <= history_days <= 90:
            raise CommandError("--history-days takes 0 to 90 days.")
        proposed_before = 0
        with transaction.atomic():
            users = seed_people(password)
            departments = seed_departments(users)
            action_types = seed_action_types(departments)
            agents, new_grants = seed_agents(users, departments, action_types)
            acted = have_acted(agents)
            if not acted and history_days:
                proposed_before = demo_history.write(timezone.now(), history_days, users, agents)
            actions = [] if acted else seed_actions(agents, action_types)
            record(
                "demo.seeded",
                GatewayState.current(),
                actor=ACTOR,
                after={
                    "users": sorted(users),
                    "departments": sorted(departments),
                    "action_types": sorted(action_types),
                    "agents": sorted(agents),
                    "new_grants": new_grants,
                    "actions_proposed": len(actions),
                    "history_days": 0 if acted else history_days,
                    "history_actions": proposed_before,
                },
            )
        chain.request_seal()  # the history's events were written without their after-commit seal requests
        if proposed_before:
            self.stdout.write(f"Wrote {history_days} days of history: {proposed_before} actions.")
        self._report_actions(actions)
        self._report_logins(password)

    def _report_actions(self, actions: list[Action]) -> None:
        if not actions:
            self.stdout.write("The demo agents have acted before: no demo actions added.")
            return
        self.stdout.write(f"Proposed {len(actions)} demo actions:")
        for action, proposal in zip(actions, demo.PROPOSALS, strict=True):
            line = f"  {action.status:<9} {action.action_type.slug:<24} {action.agent.slug:<15} {action.department}"
            self.stdout.write(line)
            if action.status != proposal.expect:
                # E.g. the gateway is paused: the demo still seeds, but say why the queue looks odd.
                self.stderr.write(self.style.WARNING(f"    expected {proposal.expect}: {action.verdict_reason}"))

    def _report_logins(self, password: str) -> None:
        rows = [("username", "password", "role", "department")]
        rows += [(p.username, password, *_role_and_department(p)) for p in demo.PEOPLE]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        self.stdout.write("\nDemo logins:")
        for n, row in enumerate(rows):
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write(("  " + "  ".join(cells)).rstrip())
            if n == 0:
                self.stdout.write("  " + "  ".join("-" * width for width in widths))
        for note in _separation_of_duties():
            self.stdout.write(note)
        self.stdout.write(f"\nLog in at {settings.SITE_URL.rstrip('/')}/login/")
        self.stdout.write(f"Agents get their API keys with: {_this_python()} manage.py issue_agent_key <agent-slug>")


def _this_python() -> str:
    """The interpreter running this command, as a reader in the project folder
    can type it (the virtualenv's, where a bare `python` may lack Django)."""
    python = Path(sys.executable)
    try:
        return str(python.relative_to(settings.BASE_DIR))
    except ValueError:
        return str(python)


def _role_and_department(person: demo.Person) -> tuple[str, str]:
    """What the login table says about a person, derived from the declarations."""
    led = ", ".join(team.name for team in demo.TEAMS if person.username in team.leads)
    backed = ", ".join(f"{team.name} (backup)" for team in demo.TEAMS if person.username in team.backups)
    owned = ", ".join(bot.slug for bot in demo.BOTS if bot.owner == person.username)
    roles = [
        "admin (superuser)" if person.admin else "",
        "lead" if led else "",
        "backup approver" if backed else "",
        f"owner of {owned}" if owned else "",
    ]
    return "; ".join(role for role in roles if role), ", ".join(part for part in (led, backed) if part) or "-"


def _separation_of_duties() -> list[str]:
    """Owners who lead a department deciding their own agent's actions: the demo's showcase."""
    routed = {capability.slug: capability.routed_to for capability in demo.CAPABILITIES}
    notes = []
    for bot in demo.BOTS:
        deciding = {routed[permit.action_type] or bot.department for permit in bot.grants}
        for team in demo.TEAMS:
            if team.slug in deciding and bot.owner in team.leads:
                notes.append(
                    f"Note: {bot.owner} leads {team.name} but owns {bot.slug}, "
                    "so another lead must approve its actions."
                )
    return notes
