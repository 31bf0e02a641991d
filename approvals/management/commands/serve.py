from __future__ import annotations

from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from approvals import scheduler


class Command(BaseCommand):
    help = "Run Countersign's ASGI server (and, embedded, its periodic jobs) in this process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        if settings.EMBEDDED_SCHEDULER:
            scheduler.start()
            self.stdout.write("Periodic jobs run in this process (embedded scheduler).")
        self.stdout.write(f"Countersign is up at http://{host}:{port}/")
        # One process: the embedded channel layer and task runner live in it.
        uvicorn.run("config.asgi:application", host=host, port=port, workers=1, log_level="warning", lifespan="off")
