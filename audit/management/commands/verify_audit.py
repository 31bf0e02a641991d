from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; name the first broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--head", action="store_true", help="Print only the head as 'seq hash', to anchor it.")
        parser.add_argument(
            "--expect", metavar="SEQ:HASH", help="Also check that event SEQ has HASH (a head anchored earlier)."
        )
        parser.add_argument("--no-seal", action="store_true", help="Do not seal pending events first.")

    def handle(self, *args: Any, head: bool, expect: str | None, no_seal: bool, **options: Any) -> None:
        if not no_seal:
            chain.seal_all()
        started = time.perf_counter()
        result = chain.verify()
        elapsed = time.perf_counter() - started
        if not result.ok:
            raise CommandError(f"Audit chain BROKEN at seq {result.broken_seq}: {result.problem}")
        if expect:
            self._check_anchor(expect)
        if head:
            self.stdout.write(f"{result.head_seq} {result.head_hash}")
            return
        rate = result.checked / elapsed if elapsed > 0 else 0
        self.stdout.write(
            f"Audit chain OK: {result.checked} events verified in {elapsed:.2f}s ({rate:,.0f}/s); "
            f"head seq {result.head_seq} hash {result.head_hash}; {result.unsealed} not yet sealed."
        )

    def _check_anchor(self, expect: str) -> None:
        from audit.models import AuditEvent

        seq_text, _, expected_hash = expect.partition(":")
        if not seq_text.isdigit() or len(expected_hash) != 64:
            raise CommandError("--expect takes SEQ:HASH, e.g. 1042:3f5a…")
        event = AuditEvent.objects.filter(seq=int(seq_text)).first()
        if event is None or event.hash != expected_hash:
            raise CommandError(f"Audit chain does not match the anchor: event seq {seq_text} has another hash.")
