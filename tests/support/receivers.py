"""A target system on loopback for the dispatch tests: a threaded HTTP
server that checks Countersign's signature, acts at most once per
Idempotency-Key, as docs/dispatch.md asks of receivers, and can be told to
fail, stall or hold a request."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.client import SIGNATURE_HEADER, verify_signature
from tests.support.servers import free_port


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one request (instead of carrying it out)."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    signature_valid: bool

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]


class Receiver:
    """Use as a context manager. `answers` queues answers for the next
    requests; with none queued it carries the request out (once per key).
    With `hold_first` set, the first request that is carried out is held
    open after its effect, until `release` is set (or 60 s pass)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Received] = []
        self.effects: dict[str, dict[str, Any]] = {}  # by Idempotency-Key
        self.rollbacks: dict[str, dict[str, Any]] = {}
        self.answers: deque[Answer] = deque()
        self.hold_first = False
        self.release = threading.Event()
        self._held = False
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"receiver-{self.port}", daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = receiver._take(self.path, dict(self.headers.items()), body)
                content = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the caller hung up (a time-out, a killed worker)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _take(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        valid = verify_signature(self.secret, body, headers.get(SIGNATURE_HEADER))
        with self._lock:
            self.requests.append(Received(path, headers, body, time.time(), valid))
            scripted = self.answers.popleft() if self.answers else None
        if scripted is not None:
            time.sleep(scripted.delay)
            return scripted.status, scripted.body
        if not valid:
            return 401, {"error": "bad signature"}
        key = headers["Idempotency-Key"]
        done = self.rollbacks if path.rstrip("/").endswith("rollback") else self.effects
        with self._lock:
            first = key not in done
            if first:
                reference = f"REF-{len(self.effects) + len(self.rollbacks) + 1}"
                done[key] = {"reference": reference, "undo": {"reference": reference}, "request": json.loads(body)}
            hold = first and self.hold_first and not self._held
            self._held = self._held or hold
        if hold:
            self.release.wait(60)
        effect = done[key]
        return (201 if first else 200), {"reference": effect["reference"], "undo": effect["undo"]}
