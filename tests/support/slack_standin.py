"""A stand-in for Slack's Web API on loopback, for the Slack tests.

A real HTTP server (http.server, one thread per request) that slack-sdk's
WebClient talks to when SLACK_API_URL points at it. It records every call
(method, arguments, bearer token) and answers the few methods Countersign
uses as Slack does: chat.postMessage, chat.update, chat.postEphemeral,
users.info and users.lookupByEmail. People are added with `person`.

Tests wait on `wait_for` (a condition variable), never on a sleep.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Call:
    method: str  # e.g. chat.postMessage
    args: dict[str, Any]
    token: str


@dataclass
class SlackStandIn:
    token: str = "xoxb-test-token"
    calls: list[Call] = field(default_factory=list)
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None
    _ts: int = 0

    # ------------------------------------------------------------ set up

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    def person(self, slack_id: str, email: str, *, confirmed: bool = True) -> None:
        self.people[slack_id] = {
            "id": slack_id,
            "name": email.split("@")[0],
            "deleted": False,
            "is_bot": False,
            "is_email_confirmed": confirmed,
            "profile": {"email": email},
        }

    def __enter__(self) -> SlackStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                self._answer(parts.path, dict(parse_qsl(parts.query)))

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    args = json.loads(raw or "{}")
                else:
                    args = dict(parse_qsl(raw))
                self._answer(parts.path, {**dict(parse_qsl(parts.query)), **args})

            def _answer(self, path: str, args: dict[str, Any]) -> None:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                method = path.rsplit("/", 1)[-1]
                body = standin._reply(method, args, token)
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ Slack's answers

    def _reply(self, method: str, args: dict[str, Any], token: str) -> dict[str, Any]:
        with self._changed:
            self.calls.append(Call(method, args, token))
            self._changed.notify_all()
            if token != self.token:
                return {"ok": False, "error": "invalid_auth"}
            if method == "chat.postMessage":
                self._ts += 1
                return {"ok": True, "channel": args["channel"], "ts": f"1700000000.{self._ts:06d}"}
            if method == "chat.update":
                return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
            if method == "chat.postEphemeral":
                return {"ok": True, "message_ts": "1700000001.000001"}
            if method == "users.info":
                person = self.people.get(args.get("user", ""))
                return {"ok": True, "user": person} if person else {"ok": False, "error": "user_not_found"}
            if method == "users.lookupByEmail":
                found = [p for p in self.people.values() if p["profile"]["email"] == args.get("email")]
                return {"ok": True, "user": found[0]} if found else {"ok": False, "error": "users_not_found"}
            return {"ok": False, "error": "unknown_method"}

    # ------------------------------------------------------------ reading

    def of(self, method: str) -> list[Call]:
        with self._changed:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        with self._changed:
            self._changed.wait_for(lambda: len([c for c in self.calls if c.method == method]) >= count, timeout)
            return [call for call in self.calls if call.method == method]
