"""Shared by the tests of the agent side (client package, adapters, MCP proxy): an agent's key, a lead
who decides from another thread as soon as a proposal shows up, and the package's folder."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

from django.core.management import call_command
from django.db import connection

from agents.models import Agent
from agents.services import issue_key
from approvals import services
from approvals.models import Action
from approvals.rules.lifecycle import Status
from approvals.rules.routing import department_for
from audit.log import Actor
from tests.support.servers import wait_for

CLIENT_PACKAGE = Path(__file__).resolve().parents[2] / "client"


def key_for(agent: Agent) -> str:
    _, raw = issue_key(agent, actor=Actor.system("test"))
    return raw


class InThread:
    """Runs `work` in another thread, as a lead's browser would; re-raises its
    error on exit and closes its database connection so none lingers."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as error:  # handed to the test thread
            self.error = error
        finally:
            connection.close()

    def __enter__(self) -> InThread:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(timeout=60)
        if self.error is not None:
            raise self.error


def when_proposed(
    decide: Callable[[Action], object], *, status: str = Status.PENDING, timeout: float = 30.0, **lookup: object
) -> InThread:
    """A lead who decides the first action matching `lookup` (e.g. action_type=...) once it is in `status`."""

    def work() -> None:
        action = wait_for(
            lambda: Action.objects.filter(status=status, **lookup).order_by("created_at").first(),
            timeout=timeout,
            what="the proposal",
        )
        decide(action)

    return InThread(work)


class LeadOnDuty:
    """Approves every new pending action of the agent as soon as it shows up, as a lead of the department
    it is routed to (never its owner), until the `with` block ends."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.before = set(Action.objects.values_list("pk", flat=True))
        self.approved: list[Action] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def new_actions(self) -> list[Action]:
        return list(Action.objects.filter(agent=self.agent).exclude(pk__in=self.before).order_by("created_at"))

    def _run(self) -> None:
        try:
            while not self.stop.wait(0.05):
                for action in self.new_actions():
                    if action.status == Status.PENDING:
                        department = department_for(action.action_type, self.agent)
                        lead = department.leads.exclude(pk=self.agent.owner_id).order_by("username").first()
                        self.approved.append(services.approve(action.pk, lead))
        except BaseException as error:
            self.error = error
        finally:
            connection.close()

    def __enter__(self) -> LeadOnDuty:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error


def demo_world(server_url: str, settings) -> tuple[Agent, dict[str, str]]:
    """The demo organisation (seed_demo) on the live server at `server_url`, its refunds dispatched to the
    server's demo target; refund-bot, and the environment an example agent reads (URL and key)."""
    settings.SITE_URL = server_url
    settings.DEMO_TARGET = True
    call_command("seed_demo", stdout=io.StringIO())
    bot = Agent.objects.get(slug="refund-bot")
    return bot, {"COUNTERSIGN_URL": server_url, "COUNTERSIGN_KEY": key_for(bot)}
