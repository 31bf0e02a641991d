from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import chain
from audit.verification import verify
from audit.witness import Anchor, parse_anchor, read_anchors


class Command(BaseCommand):
    help = (
        "Verify the audit trail: the hash chain, the retention checkpoints and their archives, and the heads "
        "anchored with witnesses. Names each row at fault and exits non-zero."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--head", action="store_true", help="Print only the head as 'seq hash', to anchor it.")
        parser.add_argument(
            "--expect", metavar="SEQ:HASH", help="Also check that event SEQ has HASH (a head anchored earlier)."
        )
        parser.add_argument(
            "--anchors",
            metavar="FILE",
            action="append",
            default=[],
            help="Also check every head anchored in FILE (the file witness's lines, '<time> <seq> <hash>'). "
            "May be given more than once.",
        )
        parser.add_argument("--no-seal", action="store_true", help="Do not seal pending events first.")

    def handle(
        self, *args: Any, head: bool, expect: str | None, anchors: list[str], no_seal: bool, **options: Any
    ) -> None:
        anchored = self._anchors(expect, anchors)
        if not no_seal:
            chain.seal_all()
        started = time.perf_counter()
        result = verify(anchored)
        elapsed = time.perf_counter() - started
        for note in result.notes:
            self.stderr.write(f"Note: {note}")
        if not result.ok:
            lines = [f"  {'seq ' + str(p.seq) if p.seq else 'trail'}: {p.message}" for p in result.problems]
            raise CommandError(
                f"Audit trail BROKEN at seq {result.broken_seq}"
                + (f" (id {result.broken_id})" if result.broken_id is not None else "")
                + ":\n"
                + "\n".join(lines)
            )
        if head:
            self.stdout.write(f"{result.head_seq} {result.head_hash}")
            return
        rate = result.checked / elapsed if elapsed > 0 else 0
        self.stdout.write(
            f"Audit chain OK: {result.checked} events verified in {elapsed:.2f}s ({rate:,.0f}/s); "
            f"head seq {result.head_seq} hash {result.head_hash}; {result.unsealed} not yet sealed; "
            f"{len(anchored)} anchors checked."
        )

    def _anchors(self, expect: str | None, files: list[str]) -> list[Anchor]:
        try:
            anchored = [anchor for name in files for anchor in read_anchors(Path(name))]
            if expect:
                anchored.append(parse_anchor(expect, "--expect"))
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from error
        return anchored
