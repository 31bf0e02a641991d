from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from approvals.demo import scheduler
from approvals.demo.fleet import Simulation, SimulationError

log = logging.getLogger(__name__)


def _local_url(host: str, port: int) -> str:
    """Where this process can reach its own server."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104  (compared, not bound)
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def start_simulator(
    url: str, rate: float | None, listening: Callable[[], bool]
) -> tuple[threading.Thread, threading.Event]:
    """Run the demo agents (approvals.demo.fleet) in a daemon thread once the server listens:
    the paced fleet (each agent at its own pace, one scripted anomaly) or, with a rate, that many
    proposals per second in all. Whatever goes wrong in it is logged; the server goes on."""
    stop = threading.Event()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proposal, not per request

    def simulate() -> None:
        try:
            while not listening() and not stop.wait(0.2):
                pass
            if rate is None:
                Simulation(url, say=log.info).run_paced(stop=stop)
            else:
                Simulation(url, rate=rate, say=log.info).run(stop=stop)
        except SimulationError as error:
            log.warning("The simulated agents stopped: %s", error)
        except Exception:
            log.exception("The simulated agents stopped")
        finally:
            close_old_connections()

    thread = threading.Thread(target=simulate, name="simulate-agents", daemon=True)
    thread.start()
    return thread, stop


class Command(BaseCommand):
    help = "Run Countersign's ASGI server (and, embedded, its periodic jobs and demo agents) in this process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--simulate",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="Embedded run: let the demo agents propose actions through the API (default: on).",
        )
        parser.add_argument(
            "--simulate-rate",
            type=float,
            default=None,
            help="Proposals per second of the demo agents in all (default: each agent at its own pace, about "
            "one a minute in all, with one scripted anomaly a few minutes in).",
        )

    def handle(
        self, *args: Any, host: str, port: int, simulate: bool, simulate_rate: float | None, **options: Any
    ) -> None:
        if settings.EMBEDDED_SCHEDULER:
            scheduler.start()
            self.stdout.write("Periodic jobs run in this process (embedded scheduler).")
        # One process: the embedded channel layer and task runner live in it.
        config = uvicorn.Config(
            "config.asgi:application", host=host, port=port, workers=1, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        simulator = None
        if settings.EMBEDDED_SCHEDULER and simulate and (simulate_rate is None or simulate_rate > 0):
            simulator = start_simulator(_local_url(host, port), simulate_rate, lambda: server.started)
            self.stdout.write("The demo agents propose actions through the API (--no-simulate: they don't).")
        self.stdout.write(f"Countersign is up at http://{host}:{port}/")
        if simulator is None:
            server.run()
            return
        # After its graceful shutdown uvicorn raises the signal it caught again; by default SIGTERM would then
        # end the process on the spot. As an exception instead, it lets the simulator revoke its keys first.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            thread, stop = simulator
            stop.set()
            thread.join(timeout=10)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
