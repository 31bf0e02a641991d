"""Receiving the gateway's webhooks: check the X-Countersign-Signature header.

The scheme, `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, is also written on the gateway's side
(agents/signing.py, audit/witness.py of the repository); keep them alike.
"""

from __future__ import annotations

import hashlib
import hmac
import time

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
