"""The signature of every webhook Countersign sends (dispatches, rollbacks, alerts):
X-Countersign-Signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

The gateway's own copy of the scheme: the server never imports the agents' package (client/), which
verifies the same header (countersign_client.signatures). audit/witness.py writes it once more, as it
may not import upward. Keep the three alike; tests/dispatch/test_dispatch_signature.py checks they agree.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Countersign-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The X-Countersign-Signature value for `body`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify_signature(
    secret: str, body: bytes, header: str | None, *, tolerance: float = SIGNATURE_TOLERANCE_SECONDS
) -> bool:
    """True when `header` signs exactly `body` with `secret`, made at most `tolerance` seconds ago
    (the demo target checks the gateway's own requests with it)."""
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
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
