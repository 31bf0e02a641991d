"""The answers that are not a new action: the error shape of approvals.api.errors, and replays."""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    """An answer other than the action: status, the error shape's code and message, extras."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra

    def body(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message, **self.extra}
        return {"error": error}


def invalid(fields: dict[str, list[str]], message: str | None = None) -> Refusal:
    """DRF's ValidationError as approvals.api.errors renders it."""
    text = message or "; ".join(f"{name or 'body'}: {' '.join(msgs)}" for name, msgs in fields.items())
    return Refusal(400, "invalid", text, fields=fields)


class Answered(Refusal):
    """A finished answer that is not an error (a replay), raised past the checks."""

    def __init__(self, status: int, answer: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(status, "", "", headers)
        self.answer = answer

    def body(self) -> dict[str, Any]:
        return self.answer
