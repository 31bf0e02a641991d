"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, one
request in flight on each, for a fixed time.

Hand-written on asyncio streams (with uvloop) rather than httpx: on a 2-core
machine the client shares the CPU with the server, and a lean client keeps
its share small and equal for both endpoints. Only what uvicorn sends is
understood: a status line, headers, then a Content-Length or chunked body.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (connection index, request number on it) -> the full request bytes
RequestFactory = Callable[[int, int], bytes]
MAX_ERRORS_KEPT = 5


@dataclass
class Round:
    label: str
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # the first few non-201 answers
    probe: Any = None  # the probe's reading at the end of the window minus its reading at the start

    @property
    def ok(self) -> int:
        return self.statuses[201]

    @property
    def errors(self) -> int:
        return sum(self.statuses.values()) - self.ok

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class _Window:
    """Counts only answers that arrive between the end of the warm-up and the stop."""

    def __init__(self, warmup: float, duration: float) -> None:
        now = time.perf_counter()
        self.measure_from = now + warmup
        self.stop_at = self.measure_from + duration

    def open(self) -> bool:
        return time.perf_counter() < self.stop_at

    def counts(self, at: float) -> bool:
        return self.measure_from <= at < self.stop_at


def run(
    label: str,
    port: int,
    make_request: RequestFactory,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    probe: Callable[[], Any] | None = None,
) -> Round:
    """Drive the server for warmup + duration seconds. `probe` (e.g. CPU
    counters; its readings need a .minus()) is read when the measured window
    opens and when it closes."""
    import uvloop

    return uvloop.run(_drive(label, port, make_request, concurrency, warmup, duration, probe))


async def _drive(
    label: str,
    port: int,
    make_request: RequestFactory,
    concurrency: int,
    warmup: float,
    duration: float,
    probe: Callable[[], Any] | None,
) -> Round:
    result = Round(label, duration)
    window = _Window(warmup, duration)
    connections = [_connection(i, port, make_request, window, result) for i in range(concurrency)]
    if probe is not None:
        connections.append(_read_probe(probe, window, result))
    await asyncio.gather(*connections)
    return result


async def _read_probe(probe: Callable[[], Any], window: _Window, result: Round) -> None:
    await asyncio.sleep(window.measure_from - time.perf_counter())
    start = probe()
    await asyncio.sleep(window.stop_at - time.perf_counter())
    result.probe = probe().minus(start)


async def _connection(index: int, port: int, make_request: RequestFactory, window: _Window, result: Round) -> None:
    n = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while window.open():
            request = make_request(index, n)
            n += 1
            started = time.perf_counter()
            try:
                writer.write(request)
                status, body, close = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError) as error:
                status, body, close = 599, repr(error).encode(), True
            finished = time.perf_counter()
            if window.counts(finished):
                _record(result, status, body, (finished - started) * 1000)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _record(result: Round, status: int, body: bytes, latency_ms: float) -> None:
    result.statuses[status] += 1
    if status == 201:
        result.latencies_ms.append(latency_ms)
    elif len(result.failures) < MAX_ERRORS_KEPT:
        result.failures.append(f"{status} {body[:300].decode(errors='replace')}")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server closes the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = await _read_chunked(reader)
    else:
        body = b""
    return status, body, headers.get(b"connection", b"").lower() == b"close"


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readline()  # the blank line after the last chunk (no trailers from uvicorn)
            return b"".join(chunks)
        chunks.append((await reader.readexactly(size + 2))[:-2])
