"""Verification of the whole audit trail: the chain, its retention
checkpoints and their archives, and the heads anchored with witnesses.

Steps, each naming the row at fault:

1. the chain from the last checkpoint (or the genesis): sequence, links and
   hashes (audit/chain.py);
2. the chain is not empty: a new installation has no events yet, but an
   emptied trail looks the same, so empty never passes; and every purge
   leaves its own `audit.purged` event after its checkpoint, so a chain that
   ends at a checkpoint was cut;
3. the checkpoints (audit/checkpoints.py): no event left below the last one,
   the last one vouched for by its `audit.purged` event, each archive found
   here matching its recorded sha256 and holding exactly the purged events;
4. the anchors (audit/witness.py): each anchored (seq, hash) is still in the
   chain, at its checkpoint, or in its archive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from audit import chain, checkpoints
from audit.chain import Problem
from audit.models import AuditCheckpoint, AuditEvent
from audit.witness import Anchor, check_anchors


@dataclass(frozen=True)
class Verification:
    checked: int
    head_seq: int
    head_hash: str
    unsealed: int
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def broken_seq(self) -> int | None:
        return self.problems[0].seq if self.problems else None

    @property
    def broken_id(self) -> int | None:
        return self.problems[0].event_id if self.problems else None

    @property
    def problem(self) -> str:
        return self.problems[0].message if self.problems else ""


def verify(anchors: Sequence[Anchor] = ()) -> Verification:
    trail = list(AuditCheckpoint.objects.order_by("seq"))
    last = trail[-1] if trail else None
    start_seq, start_hash = (last.seq, last.hash) if last else (0, chain.GENESIS)
    unsealed = AuditEvent.objects.filter(seq__isnull=True).count()
    top = AuditEvent.objects.filter(seq__gt=start_seq).order_by("-seq").values_list("seq", "hash").first()
    head_seq, head_hash = top if top else (start_seq, start_hash)
    assert head_seq is not None  # seq__gt matched it: a sealed event

    problems: list[Problem] = []
    notes: list[str] = []
    broken = chain.first_break(start_seq, start_hash, head_seq)
    if broken:
        problems.append(broken)
    if top is None:
        problems.append(_empty(last, unsealed))
    found, checkpoint_notes = checkpoints.check(trail)
    problems += found
    notes += checkpoint_notes
    anchor_problem, anchor_notes = check_anchors(anchors, trail, head_seq)
    if anchor_problem:
        problems.append(anchor_problem)
    notes += anchor_notes
    # The first row at fault leads: the lowest seq.
    problems.sort(key=lambda problem: problem.seq if problem.seq is not None else float("inf"))
    checked = (broken.seq - start_seq - 1 if broken and broken.seq else head_seq - start_seq) if top else 0
    return Verification(max(0, checked), head_seq, head_hash, unsealed, tuple(problems), tuple(notes))


def _empty(last, unsealed: int) -> Problem:
    pending = f" ({unsealed} events are not sealed yet: verify without --no-seal)" if unsealed else ""
    if last is None:
        return Problem(
            1,
            None,
            "the audit chain is empty: nothing vouches for it. A new installation has no events yet, "
            f"but an emptied trail looks the same; check it against an anchor{pending}",
        )
    return Problem(
        last.seq + 1,
        None,
        f"the chain ends at the checkpoint at seq {last.seq} (checkpoint id {last.pk}), but every purge leaves "
        f"its own audit.purged event after its checkpoint: events from seq {last.seq + 1} on were removed{pending}",
    )
