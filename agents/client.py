"""Countersign's Python client for agents.

One file that needs only httpx: copy it into your agent. The API it speaks is
described in docs/api.md.

    cs = Countersign("https://countersign.example.com", os.environ["COUNTERSIGN_KEY"])
    action = cs.propose("payments.refund", {...}, "Parcel lost in transit", amount=45)
    action = cs.wait(action["id"], timeout=300)

or let a decorator propose, wait, run and report:

    @requires_approval("payments.refund", client=cs, amount=lambda payload: payload["amount"])
    def refund(*, order_id, customer_id, amount, currency, reason): ...

    refund(order_id="ORD-104233", ..., reasoning="Parcel lost in transit", confidence=0.93)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

import httpx

log = logging.getLogger("countersign")
Action = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")

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


def _undo_window_left(action: Action) -> float:
    raw = action.get("dispatch_after")
    if not raw:
        return 0.0
    return (datetime.fromisoformat(raw) - datetime.now(UTC)).total_seconds()


def _settled(client: Countersign, action: Action, wait_timeout: float | None) -> Action:
    """Wait for the verdict. Still pending at the deadline: withdraw the proposal, so nobody approves work
    that will not be done. Auto-approved: sit out the undo window, in which a lead may still veto."""
    action = client.wait(action["id"], timeout=wait_timeout)
    if action["status"] == "pending":
        try:
            withdrawn = client.cancel(action["id"])
        except ApiError as refused:
            if refused.code != "not_pending":
                raise
            action = client.get(action["id"])  # decided in the meantime: follow the decision
        else:
            raise TimedOut("timed_out", f"No decision within {wait_timeout:g} s; proposal withdrawn.", action=withdrawn)
    if action["status"] == "approved" and (left := _undo_window_left(action)) > 0:
        time.sleep(left + 0.2)
        action = client.get(action["id"])
    return action


def _refusal(action: Action) -> CountersignError | None:
    """Why the call may not run, or None when the action is approved for the agent to carry out."""
    status, decisions = action["status"], action.get("decisions") or []
    if status == "approved":
        return None
    reason = (decisions[-1].get("comment") if decisions else "") or "no reason given"
    kind, message = {
        "rejected": (Rejected, reason),
        "expired": (Expired, "Nobody decided before the action expired."),
        "cancelled": (Cancelled, "The action was cancelled before a decision."),
        "shadowed": (Shadowed, "Observer tier: recorded for the leads, never executed."),
    }.get(status, (CountersignError, f"The gateway carries out this action type itself (now {status})."))
    return kind(status, message, action=action)


def _payload(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name: what was passed, not the defaults, which the schema may not know."""
    payload: dict[str, Any] = {}
    for name, value in signature.bind(*args, **kwargs).arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError("requires_approval needs named arguments: the payload is a JSON object.")
        payload.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
    return payload


def requires_approval(
    action_type: str,
    *,
    client: Countersign,
    reasoning: str | Callable[[dict[str, Any]], str] | None = None,
    confidence: float | None = None,
    amount: float | Decimal | Callable[[dict[str, Any]], Any] | None = None,
    context: dict[str, Any] | None = None,
    wait_timeout: float | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated function only once Countersign approves the call.

    1. The call's arguments become the payload. `reasoning`, `confidence`, `amount`, `context` and
       `idempotency_key` given per call override the decorator's and are not passed on (unless the function
       itself takes a parameter of that name). `reasoning` and `amount` may be callables of the payload.
    2. Propose, and wait for the verdict: without limit when wait_timeout is None, else withdraw the
       proposal at the deadline and raise TimedOut.
    3. Approved: call the function with the approved arguments (a lead may have edited them), then report
       `succeeded` with the return value as detail (when it is JSON), or `failed` and re-raise.
    4. Otherwise raise Blocked, Shadowed, Rejected (the lead's reason as message), Expired or Cancelled.
    """
    overrides = {"reasoning", "confidence", "amount", "context", "idempotency_key"}

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)
        own = overrides - signature.parameters.keys()

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            per_call = {name: kwargs.pop(name) for name in own & kwargs.keys()}
            payload = _payload(signature, args, kwargs)
            options = {"reasoning": reasoning, "confidence": confidence, "amount": amount, "context": context}
            options.update(per_call)
            for name in ("reasoning", "amount"):
                if callable(options[name]):
                    options[name] = options[name](payload)
            why = options.pop("reasoning")
            if not why:
                raise TypeError(f"Say why {func.__name__} should run: give reasoning= to the call or decorator.")
            action = client.propose(action_type, payload, why, **options)  # raises Blocked
            action = _settled(client, action, wait_timeout)
            refusal = _refusal(action)
            if refusal is not None:
                raise refusal
            return _run_and_report(client, func, action)

        return wrapper

    return decorate


def _run_and_report(client: Countersign, func: Callable[..., R], action: Action) -> R:
    edited = action.get("approved_payload")
    approved = action["payload"] if edited is None else edited
    try:
        result = func(**approved)
    except Exception as failure:
        _report(client, action, "failed", f"{type(failure).__name__}: {failure}")
        raise
    try:
        detail = json.loads(json.dumps(result, default=_encode))
    except (TypeError, ValueError):
        detail = None
    _report(client, action, "succeeded", detail)
    return result


def _report(client: Countersign, action: Action, outcome: str, detail: Any) -> None:
    # The work is done (or failed) by now: a lost report must not turn it into an error the caller might
    # answer by doing it again. It is logged for the operator instead.
    try:
        client.report(action["id"], outcome, detail)
    except CountersignError:
        log.exception("Could not report %s for Countersign action %s", outcome, action["id"])


# ---------------------------------------------------------------- receiving the gateway's webhooks

SIGNATURE_HEADER = "X-Countersign-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300  # how old a signed request may be before it counts as a replay


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The X-Countersign-Signature value for `body`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `header` (the X-Countersign-Signature value) signs exactly these raw body bytes with
    `secret` and was made at most `tolerance` seconds ago. Check it before parsing the body:

        if not verify_signature(SECRET, request.body, request.headers.get("X-Countersign-Signature")):
            return 401

    Then act at most once per Idempotency-Key header (the action id): a retried delivery repeats it.
    """
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body)
    # Every v1 is compared, in constant time: during a secret rotation a sender may send two.
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
