"""`@requires_approval`: a function that carries out an action runs only once Countersign approves the call."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

from countersign_client.approval import ask, report_outcome
from countersign_client.client import Action, Countersign

P = ParamSpec("P")
R = TypeVar("R")

OVERRIDES = frozenset({"reasoning", "confidence", "amount", "context", "idempotency_key"})


def requires_approval(
    action_type: str,
    *,
    client: Countersign,
    reasoning: str | Callable[[dict[str, Any]], str] | None = None,
    confidence: float | None = None,
    amount: float | Decimal | Callable[[dict[str, Any]], Any] | None = None,
    context: dict[str, Any] | None = None,
    wait_timeout: float | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R | Action]]:
    """Propose each call of the decorated function; carry it out once, by whoever the action type says.

    1. The call's arguments become the payload. `reasoning`, `confidence`, `amount`, `context` and
       `idempotency_key` given per call override the decorator's and are not passed on (unless the function
       itself takes a parameter of that name). `reasoning` and `amount` may be callables of the payload.
    2. Propose, and wait for the verdict (countersign_client.approval.ask): without limit when wait_timeout
       is None, else withdraw the proposal at the deadline and raise TimedOut.
    3. Approved, and the agent carries out this type (executor `agent`): call the function with the approved
       arguments (a lead may have edited them), then report `succeeded` with the return value as detail
       (when it is JSON), or `failed` and re-raise. Returns the function's result.
    4. Approved, and the gateway carries out this type (executor `webhook`): the function is NEVER called,
       since the gateway has already done the work. Wait for its dispatch to finish and return the action
       (a dict, status `succeeded`), or raise DispatchFailed.
    5. Otherwise raise Blocked, Shadowed, Rejected (the lead's reason as message), Expired or Cancelled.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R | Action]:
        signature = inspect.signature(func)
        own = OVERRIDES - signature.parameters.keys()

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Action:
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
            approval = ask(client, action_type, payload, why, wait_timeout=wait_timeout, **options)
            if approval.by_gateway:
                return approval.action
            try:
                result = func(**approval.arguments)  # type: ignore[call-arg]
            except Exception as failure:
                report_outcome(client, approval, "failed", f"{type(failure).__name__}: {failure}")
                raise
            report_outcome(client, approval, "succeeded", result)
            return result

        return wrapper

    return decorate


def _payload(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name: what was passed, not the defaults, which the schema may not know."""
    payload: dict[str, Any] = {}
    for name, value in signature.bind(*args, **kwargs).arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError("requires_approval needs named arguments: the payload is a JSON object.")
        payload.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
    return payload
