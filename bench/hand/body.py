"""The body of a proposal, read as approvals.api.serializers.ProposalSerializer reads it: the same
fields, limits, messages and field order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bench.hand.errors import Refusal, invalid
from bench.hand.resources import ActionType

# ---------------------------------------------------------------- the body, as ProposalSerializer reads it

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_BLANK = "This field may not be blank."
NOT_OBJECT = "Must be a JSON object."
NOT_STRING = "Not a valid string."
NOT_NUMBER = "A valid number is required."
FIELDS = ("action_type", "payload", "reasoning", "confidence", "amount", "context", "idempotency_key", "callback_url")


@dataclass
class Proposal:
    action_type: ActionType
    payload: dict[str, Any]
    reasoning: str
    confidence: Decimal | None
    amount: Decimal | None
    context: dict[str, Any]
    idempotency_key: str | None
    callback_url: str

    @classmethod
    def from_body(cls, body: Any, header_key: str | None, action_type: ActionType | None) -> Proposal:
        if not isinstance(body, dict):
            raise Refusal(400, "invalid", "The body must be a JSON object.")
        errors: dict[str, list[str]] = {}
        values: dict[str, Any] = {}
        for name in FIELDS:
            try:
                values[name] = READERS[name](body, action_type)
            except FieldError as error:
                errors[name] = [str(error)]
        if errors:
            raise invalid(errors)
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise invalid({name: ["Unknown field."] for name in unknown})
        values["idempotency_key"] = idempotency_key(values["idempotency_key"], header_key)
        return cls(**values)


class FieldError(Exception):
    pass


def _present(body: dict[str, Any], name: str, required: bool) -> Any:
    if name not in body:
        if required:
            raise FieldError(REQUIRED)
        return _ABSENT
    return body[name]


_ABSENT = object()


def _text(value: Any, max_length: int, allow_blank: bool) -> str:
    if value is None:
        raise FieldError(NOT_NULL)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(NOT_STRING)
    text = str(value).strip()
    if not text and not allow_blank:
        raise FieldError(NOT_BLANK)
    if len(text) > max_length:
        raise FieldError(f"Ensure this field has no more than {max_length} characters.")
    return text


def _object(value: Any) -> dict[str, Any]:
    if value is None:
        raise FieldError(NOT_NULL)
    if not isinstance(value, dict):
        raise FieldError(NOT_OBJECT)
    return value


def read_action_type(body: dict[str, Any], action_type: ActionType | None) -> ActionType:
    value = _present(body, "action_type", True)
    if value is None:
        raise FieldError(NOT_NULL)
    if action_type is None:
        if isinstance(value, (dict, list)):
            raise FieldError("Invalid value.")
        raise FieldError(f"No action type '{value}' exists.")
    return action_type


def read_payload(body: dict[str, Any], _: Any) -> dict[str, Any]:
    return _object(_present(body, "payload", True))


def read_reasoning(body: dict[str, Any], _: Any) -> str:
    return _text(_present(body, "reasoning", True), 20_000, allow_blank=False)


def read_confidence(body: dict[str, Any], _: Any) -> Decimal | None:
    value = _present(body, "confidence", False)
    if value is _ABSENT or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(NOT_NUMBER) from None
    if math.isnan(number) or math.isinf(number):
        raise FieldError(NOT_NUMBER)
    if number < 0:
        raise FieldError("Ensure this value is greater than or equal to 0.")
    if number > 1:
        raise FieldError("Ensure this value is less than or equal to 1.")
    return Decimal(str(round(number, 3)))


def read_amount(body: dict[str, Any], _: Any) -> Decimal | None:
    value = _present(body, "amount", False)
    if value is _ABSENT or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(NOT_NUMBER)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise FieldError(NOT_NUMBER) from None
    if not amount.is_finite():
        raise FieldError(NOT_NUMBER)
    _sign, digits, exponent = amount.as_tuple()
    decimals = max(0, -int(exponent))
    whole = max(0, len(digits) + int(exponent))
    if whole + decimals > 14:
        raise FieldError("Ensure that there are no more than 14 digits in total.")
    if decimals > 2:
        raise FieldError("Ensure that there are no more than 2 decimal places.")
    if whole > 12:
        raise FieldError("Ensure that there are no more than 12 digits before the decimal point.")
    if amount < 0:
        raise FieldError("Ensure this value is greater than or equal to 0.")
    return amount.quantize(Decimal("0.01"))


def read_context(body: dict[str, Any], _: Any) -> dict[str, Any]:
    value = _present(body, "context", False)
    return {} if value is _ABSENT else _object(value)


def read_idempotency_key(body: dict[str, Any], _: Any) -> str | None:
    value = _present(body, "idempotency_key", False)
    return None if value is _ABSENT else _text(value, 255, allow_blank=False)


def read_callback_url(body: dict[str, Any], _: Any) -> str:
    from approvals.dispatch.callbacks import url_error

    value = _present(body, "callback_url", False)
    if value is _ABSENT:
        return ""
    url = _text(value, 2000, allow_blank=True)
    error = url_error(url) if url else ""
    if error:
        raise FieldError(error)
    return url


READERS = {
    "action_type": read_action_type,
    "payload": read_payload,
    "reasoning": read_reasoning,
    "confidence": read_confidence,
    "amount": read_amount,
    "context": read_context,
    "idempotency_key": read_idempotency_key,
    "callback_url": read_callback_url,
}


def idempotency_key(in_body: str | None, in_header: str | None) -> str | None:
    if in_body and in_header and in_body != in_header:
        raise invalid(
            {"idempotency_key": ["Differs from the Idempotency-Key header."]},
            "The Idempotency-Key header and the body's idempotency_key differ.",
        )
    key = in_body or in_header
    if key is not None and not 0 < len(key) <= 255:
        raise Refusal(400, "invalid", "An idempotency key has 1 to 255 characters.")
    return key
