"""The demo agents propose realistic actions through the real HTTP API, so the
queue, the live updates and the trust figures have something to show.

    python manage.py simulate_agents --rate 0.5 --duration 300
    python manage.py simulate_agents --count 20 --url http://127.0.0.1:8000

Each demo agent gets its own key for the run (label "simulate_agents"),
revoked when the run ends, however it ends. See approvals/demo/fleet.py.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.demo.fleet import Simulation, SimulationError


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(raw: str) -> int | float:
        value = kind(raw)
        if value <= 0:
            raise ValueError(raw)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


class Command(BaseCommand):
    help = "Let the demo agents propose realistic actions through the agent API, until stopped (Ctrl-C)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=_positive(float), default=0.5, help="Proposals per second (default 0.5).")
        until = parser.add_mutually_exclusive_group()
        until.add_argument("--duration", type=_positive(float), help="Stop after this many seconds.")
        until.add_argument("--count", type=_positive(int), help="Stop after this many proposals.")
        parser.add_argument(
            "--url", default=settings.SITE_URL, help=f"Countersign's address (default {settings.SITE_URL})."
        )
        parser.add_argument(
            "--connect-timeout",
            type=_positive(float),
            default=60.0,
            help="How long to wait for the server to answer at the start (default 60 s).",
        )
        parser.add_argument("--seed", type=int, help="Seed the random choices, to repeat a run.")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proposal is ours to print, not per request
        simulation = Simulation(options["url"], rate=options["rate"], say=self.stdout.write, seed=options["seed"])
        self.stdout.write(f"Simulating the demo agents against {options['url']}; Ctrl-C stops.")
        with _sigterm_as_interrupt():
            try:
                simulation.run(
                    count=options["count"], duration=options["duration"], connect_timeout=options["connect_timeout"]
                )
            except KeyboardInterrupt:
                self.stdout.write("Stopped.")
            except SimulationError as error:
                raise CommandError(str(error)) from error
            finally:
                self.stdout.write(f"{simulation.summary()} The simulator's keys are revoked.")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A `kill` stops the run as Ctrl-C does, so the keys are revoked on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
