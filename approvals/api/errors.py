"""One error shape for the whole agent API:

{"error": {"code": "...", "message": "...", "fields": {...}?}}
"""

from __future__ import annotations

import json
import logging
import re
from io import BytesIO
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with a code an agent can branch on."""

    def __init__(self, status_code: int, code: str, message: str, **extra: Any) -> None:
        self.status_code = status_code
        self.code = code
        self.extra = extra
        super().__init__(message, code)


class PayloadTooLarge(ApiError):
    def __init__(self) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        super().__init__(413, "payload_too_large", f"The request body is over {limit // 1024} KiB.")


class LimitedJSONParser(JSONParser):
    """JSON, refused with 413 past the size limit, also for bodies sent
    without a Content-Length (DRF's parser would read them whole)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge
        try:
            data = super().parse(BytesIO(body), media_type, parser_context)
        except RecursionError as error:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from error
        unstorable = _unstorable(data)
        if unstorable:
            raise ApiError(400, "invalid", "The body holds text the database cannot store.", fields=unstorable)
        return data


# json.dumps writes every NUL as \u0000 and every surrogate, paired or not,
# as \udXXX: a body whose dump holds neither holds no text PostgreSQL refuses.
_SUSPECT = re.compile(r"\\u(?:0000|d[89a-f])")


def _unstorable(data: Any) -> dict[str, list[str]]:
    """Paths to strings (values or keys) holding NUL or an unpaired surrogate:
    valid JSON, but PostgreSQL refuses them, and the request would fail late.
    One C pass (json.dumps) clears the common body; only a suspect one (an
    emoji's surrogate pair, a backslash written before u0000) is walked."""
    if not _SUSPECT.search(json.dumps(data)):
        return {}
    found: dict[str, list[str]] = {}
    stack: list[tuple[str, Any]] = [("", data)]  # iterative: nesting is as deep as the parser allowed
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for name, item in value.items():
                here = f"{path}.{name}" if path else name
                stack.append((here, name))
                stack.append((here, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value))
        elif isinstance(value, str) and not _storable(value):
            found[path or "body"] = ["NUL characters and unpaired surrogates are not allowed."]
    return found


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field.sub": ["message", ...]}."""
    if isinstance(detail, dict):
        fields: dict[str, list[str]] = {}
        for name, value in detail.items():
            key = "" if name == "non_field_errors" else str(name)
            fields.update(_flatten(value, f"{prefix}.{key}" if prefix and key else prefix or key))
        return fields
    if isinstance(detail, list) and detail and all(not isinstance(item, (dict, list)) for item in detail):
        return {prefix: [str(item) for item in detail]}
    if isinstance(detail, list):
        fields = {}
        for index, value in enumerate(detail):
            fields.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return fields
    return {prefix: [str(detail)]}


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, **extra}
    if fields:
        error["fields"] = fields
    return {"error": error}


def handle(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, reshaped. Django's own 404 and body-size
    errors are turned into API errors first."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("No such action among yours.")
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, (OperationalError, InterfaceError)):
        return _unavailable(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = error_body(exc.code, str(exc.detail), **exc.extra)
    elif isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "; ".join(f"{name or 'body'}: {' '.join(msgs)}" for name, msgs in fields.items())
        response.data = error_body("invalid", message, fields)
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), "error")
        response.data = error_body(code, str(getattr(exc, "detail", exc)))
    return response


RETRY_AFTER_SECONDS = 1


def _unavailable(exc: Exception) -> Response:
    """The database connection failed (dropped, restarting, pool exhausted).
    A transaction it broke rolled back whole, so nothing is half-written; one
    that had committed is found again by the retry's idempotency key."""
    log.warning("Agent API answered 503: the database connection failed (%s)", exc)
    body = error_body(
        "unavailable",
        "The gateway lost its database connection while answering. "
        "Retry with the same idempotency key: a proposal is stored once, however often it is sent.",
    )
    return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


# ---------------------------------------------------------------- outside DRF's views

API_PREFIX = "/api/"


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 for pages; the error shape for any path under /api/ that no
    view matched (say, an action id that is not a UUID): an agent reads JSON."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 page; the error shape under /api/."""
    if request.path.startswith(API_PREFIX):
        body = error_body(
            "server_error",
            "The gateway failed to answer. Retry with the same idempotency key: a proposal is never stored twice.",
        )
        return JsonResponse(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
