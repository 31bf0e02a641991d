"""Anchoring the chain's head with witnesses, and checking it against them.

Every hour (audit.tasks.send_audit_anchor) the head's (seq, hash) goes to
each witness in AUDIT_WITNESS:

- `file:/path`: one line appended, "<time> <seq> <hash>";
- `mailto:address`: an email whose body is that line;
- `https://...` (or `http://`): a JSON POST {"at", "seq", "hash", "site"},
  signed like alert webhooks when AUDIT_WITNESS_SECRET is set.

A witness out of reach of whoever can write the database (another
machine, a mailbox, a ticketing system) makes a rewrite of the trail
visible: `verify_audit --anchors FILE` checks every anchored head.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from audit import chain
from audit.chain import Problem
from audit.checkpoints import archived_hash
from audit.models import AuditEvent

log = logging.getLogger(__name__)

SCHEMES = ("file:", "mailto:", "https://", "http://")
_LINE = re.compile(r"^(?:(?P<at>\S+)\s+)?(?P<seq>\d+)[\s:]+(?P<hash>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    source: str  # where it was read, e.g. "anchors.log line 12"

    def line(self, at: datetime) -> str:
        return f"{at.isoformat(timespec='seconds')} {self.seq} {self.hash}"


class WitnessFailed(Exception):
    pass


# ---------------------------------------------------------------- sending


def send_head() -> Anchor | None:
    """Send the head to every configured witness. Returns what was sent;
    None when nothing is sealed yet. Raises WitnessFailed after trying all
    of them when any failed."""
    chain.seal_all()
    seq, digest = chain.head()
    if seq == 0:
        return None
    anchor = Anchor(seq, digest, "head")
    at = timezone.now()
    failures = []
    for target in settings.AUDIT_WITNESS:
        try:
            _send(target, anchor, at)
        except (OSError, httpx.HTTPError, WitnessFailed) as error:
            log.exception("Could not anchor the audit head with %s", target)
            failures.append(f"{target}: {error!r}")
    if failures:
        raise WitnessFailed("; ".join(failures))
    return anchor


def _send(target: str, anchor: Anchor, at: datetime) -> None:
    if target.startswith("file:"):
        path = Path(target.removeprefix("file:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as witness:
            witness.write(anchor.line(at) + "\n")
            witness.flush()
            os.fsync(witness.fileno())
    elif target.startswith("mailto:"):
        send_mail(
            f"Countersign audit head: seq {anchor.seq}",
            "The head of Countersign's audit chain. Keep this line; "
            "`verify_audit --anchors FILE` checks the chain against such lines.\n\n" + anchor.line(at) + "\n",
            settings.DEFAULT_FROM_EMAIL,
            [target.removeprefix("mailto:")],
        )
    elif target.startswith(("https://", "http://")):
        _post(target, anchor, at)
    else:
        raise WitnessFailed(f"unknown witness {target!r}: use one of {', '.join(SCHEMES)}")


# The scheme of every webhook Countersign signs (agents/signing.py signs with it;
# audit sits below agents and so keeps its own few lines of it).
SIGNATURE_HEADER = "X-Countersign-Signature"


def _sign(secret: str, body: bytes) -> str:
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _post(url: str, anchor: Anchor, at: datetime) -> None:
    body = json.dumps(
        {"at": at.isoformat(timespec="seconds"), "seq": anchor.seq, "hash": anchor.hash, "site": settings.SITE_URL},
        separators=(",", ":"),
    ).encode()
    # The same head sent twice is one anchor: receivers may keep it once.
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Countersign",
        "Idempotency-Key": f"audit-head-{anchor.seq}",
    }
    if settings.AUDIT_WITNESS_SECRET:
        headers[SIGNATURE_HEADER] = _sign(settings.AUDIT_WITNESS_SECRET, body)
    with httpx.Client(follow_redirects=False) as client:
        response = client.post(url, content=body, headers=headers, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS)
    if not response.is_success:
        raise WitnessFailed(f"HTTP {response.status_code} from {url}")


# ---------------------------------------------------------------- checking


def read_anchors(path: Path) -> list[Anchor]:
    """Anchors from a witness file: "<time> <seq> <hash>" per line (what
    the file witness writes), or "<seq> <hash>" / "<seq>:<hash>" (what
    `verify_audit --head` prints); blank lines and # comments are skipped."""
    anchors = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            match = _LINE.match(text)
            if not match:
                raise ValueError(f"{path} line {number} is not '<time> <seq> <hash>': {text[:80]!r}")
            anchors.append(Anchor(int(match["seq"]), match["hash"], f"{path} line {number}"))
    return anchors


def parse_anchor(text: str, source: str) -> Anchor:
    match = _LINE.match(text.strip())
    if not match:
        raise ValueError(f"{source}: expected SEQ:HASH, e.g. 1042:3f5a…")
    return Anchor(int(match["seq"]), match["hash"], source)


def check_anchors(anchors: Iterable[Anchor], trail: Sequence, head_seq: int) -> tuple[Problem | None, list[str]]:
    """The first anchor (lowest seq) the trail disagrees with, as a problem
    naming the row; and notes on anchors that could not be checked here."""
    notes: list[str] = []
    for anchor in sorted(anchors, key=lambda a: a.seq):
        said = f"{anchor.source} says event seq {anchor.seq} has hash {anchor.hash}"
        if anchor.seq > head_seq:
            return (
                Problem(
                    head_seq + 1,
                    None,
                    f"the chain ends at seq {head_seq}, but {said}: events from seq {head_seq + 1} on were removed",
                ),
                notes,
            )
        covering = next((c for c in trail if c.seq >= anchor.seq), None)
        if covering is not None:
            if covering.seq == anchor.seq:
                found, readable = covering.hash, True
            else:
                found, readable = archived_hash(covering, anchor.seq)
            if not readable:
                notes.append(f"{anchor.source}: seq {anchor.seq} was purged and its archive is not here: not checked")
                continue
            if found != anchor.hash:
                return Problem(
                    anchor.seq, None, f"the purged event seq {anchor.seq} had hash {found}, but {said}"
                ), notes
            continue
        event = AuditEvent.objects.filter(seq=anchor.seq).values_list("id", "hash").first()
        if event is None:
            return Problem(anchor.seq, None, f"event seq {anchor.seq} is missing, but {said}"), notes
        if event[1] != anchor.hash:
            return (
                Problem(
                    anchor.seq, event[0], f"event seq {anchor.seq} (id {event[0]}) has hash {event[1]}, but {said}"
                ),
                notes,
            )
    return None, notes
