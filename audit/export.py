"""Streaming exports of audit events: CSV and JSON Lines, constant memory."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from audit.chain import CONTENT_COLUMNS

# Everything an event holds: its place in the chain, its content, its hashes.
FIELDS = ("seq", *CONTENT_COLUMNS, "prev_hash", "hash")
CHUNK = 5000


def _rows(events: QuerySet) -> Iterator[dict[str, Any]]:
    for values in events.values_list(*FIELDS).iterator(chunk_size=CHUNK):
        row = dict(zip(FIELDS, values, strict=True))
        row["created_at"] = row["created_at"].isoformat()
        yield row


def as_jsonl(events: QuerySet) -> Iterator[str]:
    for row in _rows(events):
        yield json.dumps(row, separators=(",", ":"), sort_keys=True) + "\n"


class _Echo:
    """csv.writer wants a file; this one hands each line back instead."""

    def write(self, value: str) -> str:
        return value


def as_csv(events: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(FIELDS)
    for row in _rows(events):
        yield writer.writerow([_cell(row[name]) for name in FIELDS])


# A spreadsheet reads a cell starting with one of these as a formula (or
# strips the character and then does): a user name like =HYPERLINK(...) would
# run in the reader's spreadsheet. OWASP's advice: prefix such cells with a
# single quote, which the spreadsheet shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str):
        return neutralise(value)
    return "" if value is None else value


def parse_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield json.loads(line)


async def streamed_in_thread(lines: Iterator[str], batch: int = 1000) -> AsyncIterator[str]:
    """Serve a synchronous export to an ASGI server without holding it all.

    Django would otherwise collect a sync iterator into a list before the
    first byte goes out. Each batch is read in the request's own thread
    (thread-sensitive), where the database cursor behind `lines` lives."""
    take = sync_to_async(lambda: "".join(islice(lines, batch)))
    while chunk := await take():
        yield chunk
