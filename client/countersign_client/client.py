"""The agent API over HTTP: propose, read, wait, cancel, report, register an action type.

Needs only httpx. The API it speaks is described in docs/api.md of the Countersign repository.

    cs = Countersign("https://countersign.example.com", os.environ["COUNTERSIGN_KEY"])
    action = cs.propose("payments.refund", {...}, "Parcel lost in transit", amount=45)
    action = cs.wait(action["id"], timeout=300)
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx

log = logging.getLogger("countersign")
Action = dict[str, Any]

MAX_WAIT_SECONDS = 60  # the API's longest long poll
BLOCK_CODES = frozenset({"not_granted", "agent_suspended", "gateway_paused", "limit_exceeded"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Failures after which the request certainly did not reach the API's code.
UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class CountersignError(Exception):
    """An API error, {"error": {"code", "message", "fields"?}}, or a verdict that stops the call.
    `status` is the HTTP status of an API error (None for a verdict, or when no answer came);
    `action` is the action concerned, when there is one."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        fields: dict[str, list[str]] | None = None,
        action: Action | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status
        self.fields = fields or {}
        self.action = action


class ApiError(CountersignError):
    """The API refused the request: bad key (401), invalid body (400), not found (404), conflict (409), …"""


class Unreachable(CountersignError):
    """No answer from the API, even after the retries."""


class Blocked(CountersignError):
    """The policy refused the proposal (403): `code` is not_granted, agent_suspended, gateway_paused or
    limit_exceeded. The proposal is stored all the same; `action` is it."""


class Rejected(CountersignError):
    """A lead rejected the action (or vetoed it in its undo window); `message` is their reason."""


class Expired(CountersignError):
    """Nobody decided the action before it expired."""


class Cancelled(CountersignError):
    """The action was cancelled before a decision."""


class Shadowed(CountersignError):
    """The agent is at observer tier for this action type: the proposal is shown to leads, never executed."""


class TimedOut(CountersignError):
    """No decision within the decorator's wait_timeout; the proposal was withdrawn (cancelled)."""


class DispatchFailed(CountersignError):
    """The gateway carried out the approved action (webhook executor) and it failed; `action` says how."""


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _error(response: httpx.Response) -> CountersignError:
    try:
        body = response.json()
        error = body["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        body, error = {}, {}
        code, message = f"http_{response.status_code}", response.text[:200] or response.reason_phrase
    kind = Blocked if response.status_code == 403 and code in BLOCK_CODES else ApiError
    return kind(code, message, response.status_code, error.get("fields"), body.get("action"))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:
        message = "The answer is not JSON: is this the address of Countersign?"
        raise ApiError("malformed_response", message, response.status_code) from error


class Countersign:
    """The agent API, as the agent whose key this is. Use one per agent (key); close it, or use `with`."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout, self.retries = timeout, retries
        self.http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1/",
            headers={"Authorization": f"Bearer {key}", "User-Agent": "countersign-python"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Countersign:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def propose(
        self,
        action_type: str,
        payload: dict[str, Any],
        reasoning: str,
        *,
        confidence: float | None = None,
        amount: float | Decimal | str | None = None,
        context: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Action:
        """Propose an action; returns it with the policy's verdict in `status` (approved, pending or shadowed).
        Raises Blocked when the policy refuses it. Retried under one idempotency key, so it is recorded once."""
        body: dict[str, Any] = {"action_type": action_type, "payload": payload, "reasoning": reasoning}
        optional = {"confidence": confidence, "amount": str(amount) if amount is not None else None, "context": context}
        body.update({name: value for name, value in optional.items() if value is not None})
        body["idempotency_key"] = idempotency_key or str(uuid.uuid4())
        return self._call("POST", "actions/", body=body, safe_to_repeat=True)

    def get(self, action_id: str) -> Action:
        return self._call("GET", f"actions/{action_id}/")

    def wait(self, action_id: str, timeout: float | None = 60.0) -> Action:
        """The action once it has left `pending`, or as it is after `timeout` seconds (None: no limit).
        Long-polls, so a decision arrives within a moment of being made."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_WAIT_SECONDS if deadline is None else deadline - time.monotonic()
            wait = max(0, min(MAX_WAIT_SECONDS, math.ceil(left)))  # the API counts whole seconds
            action = self._call("GET", f"actions/{action_id}/", params={"wait": wait}, timeout=self.timeout + wait)
            if action["status"] != "pending" or (deadline is not None and time.monotonic() >= deadline):
                return action

    def cancel(self, action_id: str) -> Action:
        """Withdraw a pending action. ApiError 409 `not_pending` once it is decided."""
        return self._call("POST", f"actions/{action_id}/cancel/", body={})

    def report(self, action_id: str, outcome: str, detail: Any = None, undo: Any = None) -> Action:
        """Report how an approved action you executed went: outcome `succeeded` or `failed`."""
        body: dict[str, Any] = {"outcome": outcome}
        body.update({name: value for name, value in (("detail", detail), ("undo", undo)) if value is not None})
        return self._call("POST", f"actions/{action_id}/result/", body=body)

    def report_rollback(self, action_id: str, outcome: str, detail: Any = None) -> Action:
        """Report how undoing an action went, once a lead asked for it (status `rollback_requested`):
        `succeeded` makes it rolled_back, `failed` leaves it in effect (succeeded)."""
        body: dict[str, Any] = {"kind": "rollback", "outcome": outcome}
        if detail is not None:
            body["detail"] = detail
        return self._call("POST", f"actions/{action_id}/result/", body=body)

    def register_action_type(
        self, slug: str, payload_schema: dict[str, Any], *, name: str = "", description: str = ""
    ) -> dict[str, Any]:
        """Make an action type known to the gateway, agent-executed and with no grant: proposals of it are
        refused (not_granted) until an admin grants it. Idempotent on the slug; an existing type is returned
        as it is, never changed. Returns the type (`slug`, `executor`, `payload_schema`, `granted`, ...)."""
        body = {"slug": slug, "payload_schema": payload_schema, "name": name, "description": description}
        return self._call("POST", "action-types/", body=body, safe_to_repeat=True)

    def me(self) -> dict[str, Any]:
        """This agent: status, and grants with their tier, limits and approval rates."""
        return self._call("GET", "me/")

    def list(self, status: str | None = None, *, limit: int = 50) -> list[Action]:
        """Your newest actions (at most `limit`), optionally only those in one status."""
        actions: list[Action] = []
        page = 1
        while len(actions) < limit:
            params: dict[str, Any] = {"page": page, **({"status": status} if status else {})}
            answer = self._call("GET", "actions/", params=params)
            actions += answer["results"]
            if not answer.get("next"):
                break
            page += 1
        return actions[:limit]

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        safe_to_repeat: bool | None = None,
    ) -> Any:
        """One API call, retried with backoff while the API is unreachable, overloaded (5xx) or throttling
        (429, after its Retry-After). A request that may have been carried out is repeated only when that is
        harmless: reads, and proposals (their idempotency key makes the repeat a replay)."""
        repeatable = method == "GET" if safe_to_repeat is None else safe_to_repeat
        content = None if body is None else json.dumps(body, default=_encode)
        headers = {"Content-Type": "application/json"} if content is not None else {}
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.http.request(
                    method, path, content=content, params=params, headers=headers, timeout=timeout or self.timeout
                )
            except httpx.TransportError as error:
                if last or not (repeatable or isinstance(error, UNSENT_ERRORS)):
                    raise Unreachable("unreachable", f"{method} {path}: {error!r}") from error
                self._pause(attempt)
                continue
            if response.is_success:
                return _json(response)
            retry = response.status_code == 429 or (repeatable and response.status_code in RETRYABLE_STATUSES)
            if last or not retry:
                raise _error(response)
            self._pause(attempt, response.headers.get("Retry-After"))
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _pause(attempt: int, retry_after: str | None = None) -> None:
        if retry_after and retry_after.isdigit():
            time.sleep(min(int(retry_after), 60))
        else:  # exponential backoff with jitter, so a fleet of agents does not retry in step
            time.sleep(min(0.5 * 2**attempt, 8) * random.uniform(0.5, 1.0))
