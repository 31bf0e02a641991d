"""Shared by the tests of the agent side (client package, adapters, MCP proxy): an agent's key, a lead
who decides from another thread as soon as a proposal shows up, and the package's folder."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from django.db import connection

from agents.models import Agent
from agents.services import issue_key
from approvals.lifecycle import Status
from approvals.models import Action
from audit.log import Actor
from tests.servers import wait_for

CLIENT_PACKAGE = Path(__file__).resolve().parent.parent / "client"


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
