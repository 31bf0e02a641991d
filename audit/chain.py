"""The hash chain over the audit trail: sealing and verification.

Events are inserted unsealed (no `seq`, no hash) inside the transaction of the
change they describe, so intake never waits on a chain-wide lock. Just after
commit a sequencer seals them in order: each gets the next `seq`, the previous
event's hash, and its own hash

    sha256("<seq>|<prev_hash>|<content>")

where <content> is every content column rendered as text by the database
itself, each as "<length>:<text>" (or "-" for NULL), so the encoding is
unambiguous and sealing and verification read exactly the same bytes.

Sealing runs in a background thread of each process (or inline, in tests),
under a PostgreSQL advisory lock so only one sealer works at a time across all
machines; a periodic task seals anything a crashed process left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from audit.models import AuditCheckpoint

log = logging.getLogger(__name__)

TABLE = "audit_auditevent"
CONTENT_COLUMNS = (
    "id",
    "created_at",
    "actor_kind",
    "actor_id",
    "actor_label",
    "verb",
    "object_type",
    "object_id",
    "object_label",
    "department_id",
    "agent_id",
    "before",
    "after",
    "context",
)
GENESIS = "0" * 64
SEAL_LOCK_ID = 0x43534155  # "CSAU": the advisory lock of the sequencer
SEAL_BATCH = 5000


def content_sql(vendor: str) -> str:
    """The SQL that renders an event's content as one text. PostgreSQL's row
    literal quotes and escapes each field, so it is unambiguous and cheap;
    elsewhere each column becomes "<length>:<text>" (or "-" for NULL)."""
    if vendor == "postgresql":
        return f"CAST(ROW({', '.join(CONTENT_COLUMNS)}) AS TEXT)"
    parts = [f"COALESCE(LENGTH(CAST({c} AS TEXT)) || ':' || CAST({c} AS TEXT), '-')" for c in CONTENT_COLUMNS]
    return " || '|' || ".join(parts)


def link_hash(seq: int, prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{seq}|{prev_hash}|{content}".encode()).hexdigest()


# ---------------------------------------------------------------- sealing


def head() -> tuple[int, str]:
    """The last sealed (seq, hash); after a purge of everything, the checkpoint's."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT seq, hash FROM {TABLE} WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")  # noqa: S608
        row = cursor.fetchone()
    if row:
        return row[0], row[1]
    checkpoint = AuditCheckpoint.objects.order_by("-seq").first()
    return (checkpoint.seq, checkpoint.hash) if checkpoint else (0, GENESIS)


def seal_batch(limit: int = SEAL_BATCH) -> int:
    """Seal up to `limit` unsealed events in insertion order. Returns how many;
    0 also when another sealer holds the lock (it will seal ours too)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEAL_LOCK_ID])
            if not cursor.fetchone()[0]:
                return 0
        cursor.execute(
            f"SELECT id, {content_sql(connection.vendor)} FROM {TABLE} WHERE seq IS NULL ORDER BY id LIMIT %s",  # noqa: S608
            [limit],
        )
        unsealed = cursor.fetchall()
        if not unsealed:
            return 0
        seq, prev = head()
        updates = []
        for event_id, content in unsealed:
            seq += 1
            digest = link_hash(seq, prev, content)
            updates.append((seq, prev, digest, event_id))
            prev = digest
        _write_seals(cursor, updates)
    return len(unsealed)


def _write_seals(cursor, updates: list[tuple[int, str, str, int]]) -> None:
    if connection.vendor == "postgresql":
        # One statement for the whole batch: a round trip per row would cost
        # more than the hashing.
        values = ", ".join(["(%s::bigint, %s, %s, %s::bigint)"] * len(updates))
        cursor.execute(
            f"UPDATE {TABLE} AS e SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash "  # noqa: S608
            f"FROM (VALUES {values}) AS v(seq, prev_hash, hash, id) WHERE e.id = v.id",
            [value for row in updates for value in row],
        )
    else:
        cursor.executemany(f"UPDATE {TABLE} SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s", updates)  # noqa: S608


def seal_all() -> int:
    total = 0
    while True:
        sealed = seal_batch()
        total += sealed
        if sealed < SEAL_BATCH:
            return total


class _Sequencer:
    """One daemon thread per process that seals after commits, in batches."""

    def __init__(self) -> None:
        self.forget_thread()

    def forget_thread(self) -> None:
        """A thread does not survive fork: a child (a prefork worker's process)
        starts its own, with a lock and an event no thread of the parent held."""
        self._wake = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()

    def notify(self) -> None:
        if not self._started:
            with self._start_lock:
                if not self._started:
                    threading.Thread(target=self._run, name="audit-sequencer", daemon=True).start()
                    self._started = True
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=5.0)
            # Let a burst of commits gather, so one pass seals them all.
            time.sleep(settings.AUDIT_SEAL_COALESCE_SECONDS)
            self._wake.clear()
            try:
                seal_all()
            except Exception:  # the periodic sweep retries; keep the thread alive
                log.exception("Sealing the audit chain failed")
            finally:
                close_old_connections()


_sequencer = _Sequencer()
os.register_at_fork(after_in_child=_sequencer.forget_thread)


def request_seal() -> None:
    """Called after each commit that wrote audit events."""
    mode = settings.AUDIT_SEALING
    if mode == "inline":
        seal_all()
    elif mode == "background":
        _sequencer.notify()
    # "off": only for measuring what chaining costs (bench/); never in production.


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class Problem:
    """One thing verification found wrong, naming the row: the event's seq and
    id (None when the event is gone), or what else is at fault."""

    seq: int | None
    event_id: int | None
    message: str


def first_break(start_seq: int, start_hash: str, head_seq: int) -> Problem | None:
    """The first event after `start_seq` whose sequence, link or hash is wrong."""
    if connection.vendor == "postgresql":
        return _first_break_in_database(start_seq, start_hash, head_seq)
    return _first_break_in_python(start_seq, start_hash)


def _describe(seq: int, event_id: int, expected_seq: int, linked: bool, previous_id: int | None) -> Problem:
    before = f"seq {seq - 1}" + (f" (id {previous_id})" if previous_id is not None else "")
    if seq != expected_seq:
        return Problem(
            expected_seq,
            None,
            f"event seq {expected_seq} is missing (the next one present is seq {seq}, id {event_id}): deleted?",
        )
    if not linked:
        return Problem(
            seq, event_id, f"event seq {seq} (id {event_id}) does not link to event {before}: moved or replaced?"
        )
    # The hash covers the previous hash: a forged event with a recomputed
    # hash, its successor re-linked to it, breaks here, at the successor.
    return Problem(
        seq,
        event_id,
        f"event seq {seq} (id {event_id}) does not match its hash: its content was changed, or the event "
        f"before it, {before}, was forged with a recomputed hash and this one re-linked to it",
    )


def _first_break_in_python(start_seq: int, start_hash: str) -> Problem | None:
    sql = (
        f"SELECT seq, id, prev_hash, hash, {content_sql(connection.vendor)} FROM {TABLE} "  # noqa: S608
        "WHERE seq > %s ORDER BY seq"
    )
    expected_seq, prev, previous_id = start_seq, start_hash, None
    with connection.cursor() as cursor:
        cursor.execute(sql, [start_seq])
        while rows := cursor.fetchmany(20_000):
            for seq, event_id, prev_hash, digest, content in rows:
                expected_seq += 1
                linked = prev_hash == prev
                matches = link_hash(seq, prev_hash, content) == digest
                if seq != expected_seq or not linked or not matches:
                    return _describe(seq, event_id, expected_seq, linked, previous_id)
                prev, previous_id = digest, event_id
    return None


# PostgreSQL checks the chain itself: it renders, hashes and compares every
# row next to the data, in parallel slices, and sends back only the first
# broken link. Each slice also reads the event just before it, to check the
# link across the seam.
_SLICE_SQL = f"""
SELECT seq, expected_seq, linked FROM (
    SELECT seq,
           COALESCE(LAG(seq) OVER w, %(seam_seq)s) + 1 AS expected_seq,
           prev_hash = COALESCE(LAG(hash) OVER w, %(seam_hash)s) AS linked,
           matches
    FROM (
        SELECT seq, prev_hash, hash,
               encode(sha256(convert_to(seq::text || '|' || prev_hash || '|' || {content_sql("postgresql")}, 'UTF8')),
                      'hex') = hash AS matches
        FROM {TABLE}
        WHERE seq > %(after)s AND seq <= %(upto)s
    ) hashed
    WINDOW w AS (ORDER BY seq)
) checked
WHERE seq > %(from_seq)s AND NOT (seq = expected_seq AND linked AND matches)
ORDER BY seq LIMIT 1
"""  # noqa: S608


def _first_break_in_database(start_seq: int, start_hash: str, head_seq: int, slices: int = 2) -> Problem | None:
    if head_seq <= start_seq:
        return None
    if connection.in_atomic_block or head_seq - start_seq < 50_000:
        slices = 1  # other connections could not see this transaction's rows; small chains need no help
    size = -(-(head_seq - start_seq) // slices)
    bounds = [(lo, min(lo + size, head_seq)) for lo in range(start_seq, head_seq, size)]
    found: list[Problem] = []

    def check(lo: int, hi: int) -> None:
        try:
            params: dict[str, int | str] = {
                # A slice after the first starts one event early, for the seam.
                "after": lo - 1 if lo > start_seq else lo,
                "from_seq": lo,
                "upto": hi,
                "seam_seq": lo if lo == start_seq else lo - 1,
                "seam_hash": start_hash if lo == start_seq else "",
            }
            with transaction.atomic(), connection.cursor() as cursor:
                # Room to order the slice's narrow rows in memory, not on disk.
                cursor.execute("SET LOCAL work_mem = '64MB'")
                cursor.execute(_SLICE_SQL, params)
                row = cursor.fetchone()
            if row:
                # Only now the ids, for the message: carrying them through
                # the window over every row would slow the whole check.
                seq, expected_seq, linked = row
                with connection.cursor() as cursor:
                    cursor.execute(f"SELECT seq, id FROM {TABLE} WHERE seq IN (%s, %s)", [seq, seq - 1])  # noqa: S608
                    ids = dict(cursor.fetchall())
                found.append(_describe(seq, ids[seq], expected_seq, linked, ids.get(seq - 1)))
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()

    workers = [threading.Thread(target=check, args=bound) for bound in bounds[1:]]
    for worker in workers:
        worker.start()
    check(*bounds[0])
    for worker in workers:
        worker.join()
    return min(found, key=lambda problem: problem.seq or 0) if found else None
