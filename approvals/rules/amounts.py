"""Where the money an action moves lives in its payload, and reading it from there.

An action type that moves money names the place of the amount in its payload
(a dotted path such as `amount` or `refund.amount`) and where its currency
comes from (another path, or a fixed code). The action's amount is read from
the payload, never taken on the agent's word: on the proposal, and again on
every edit a lead makes. A pure function of its inputs, like the policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

PATH = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
CENT = Decimal("0.01")
# Action.amount holds 14 digits, two of them decimals.
MAX_AMOUNT = Decimal("999999999999.99")


@dataclass(frozen=True)
class Money:
    amount: Decimal | None  # None: the action type moves no money
    currency: str = ""


class AmountError(Exception):
    """The payload does not carry a valid amount (or currency) where its action type says."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("The payload does not carry a valid amount.")


_MISSING = object()


def lookup(payload: Any, path: str) -> Any:
    """The value at a dotted path (a number indexes a list), or _MISSING."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def read_money(payload: Any, *, amount_path: str, currency_path: str = "", currency: str = "") -> Money:
    """The amount and currency at the action type's paths. Raises AmountError,
    keyed by the path, when a money-moving payload lacks a valid one."""
    if not amount_path:
        return Money(None)
    errors: dict[str, list[str]] = {}
    amount = _amount(lookup(payload, amount_path), amount_path, errors)
    if currency_path:
        code = lookup(payload, currency_path)
        if code is _MISSING:
            errors.setdefault(currency_path, []).append(f"The currency is required at '{currency_path}'.")
        elif not isinstance(code, str) or not CURRENCY.match(code):
            errors.setdefault(currency_path, []).append("The currency must be a three-letter code such as EUR.")
        else:
            currency = code
    if errors:
        raise AmountError(errors)
    return Money(amount, currency)


def _amount(value: Any, path: str, errors: dict[str, list[str]]) -> Decimal | None:
    def refuse(message: str) -> None:
        errors.setdefault(path, []).append(message)

    if value is _MISSING or value is None:
        refuse(f"The amount is required at '{path}': this action type moves money.")
        return None
    # bool is an int in Python, and "true" is no amount.
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        refuse("The amount must be a number, such as 45.50.")
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        refuse("The amount must be a number, such as 45.50.")
        return None
    if not amount.is_finite():
        refuse("The amount must be a finite number.")
    elif amount < 0:
        refuse("The amount may not be negative.")
    elif amount != amount.quantize(CENT, rounding="ROUND_DOWN"):
        refuse("The amount has at most two decimal places.")
    elif amount > MAX_AMOUNT:
        refuse(f"The amount may be at most {MAX_AMOUNT:,}.")
    else:
        return amount.quantize(CENT)
    return None
