"""The digest of a payload: what an approval is bound to.

sha256 over the payload's canonical JSON (keys sorted, no spaces, non-ASCII
escaped), so the same JSON value always has the same digest, whatever its
key order or whitespace on the way in. A receiver recomputes it from the
dispatched payload the same way (docs/dispatch.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

HEADER = "X-Countersign-Payload-Digest"


def canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def payload_digest(payload: Any) -> str:
    return hashlib.sha256(canonical(payload)).hexdigest()
