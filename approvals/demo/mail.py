"""Mail in the embedded run: one line on the console per email, the whole
mail kept for /demo/mail/, where an admin reads it.

The backend writes each message to DEMO_MAIL_DIR (under DATA_DIR) as an
.eml file, so mail sent by `seed_demo` and by the server, two processes,
lands in one place; it keeps the newest KEPT of them. The page is there only
while this backend is the one in use; to anyone but an admin it is a 404.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from audit.access import is_admin

log = logging.getLogger(__name__)

BACKEND = "approvals.demo.mail.OneLineEmailBackend"
KEPT = 500


def mail_dir() -> Path:
    return Path(settings.DEMO_MAIL_DIR)


class OneLineEmailBackend(BaseEmailBackend):
    """One line per email on the console; the full mail kept on disk for the page."""

    def __init__(self, *args: Any, stream: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream = stream or sys.stdout

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        folder = mail_dir()
        folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            name = f"{timezone.now():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
            (folder / name).write_bytes(message.message().as_bytes())
            recipients = ", ".join(message.recipients())
            self.stream.write(f"Mail to {recipients}: {message.subject} (read it at /demo/mail/)\n")
            self.stream.flush()
            sent += 1
        for old in sorted(folder.glob("*.eml"))[:-KEPT]:
            old.unlink(missing_ok=True)
        return sent


@dataclass(frozen=True)
class Mail:
    sent_at: datetime
    to: str
    subject: str
    body: str


def _read(path: Path) -> Mail:
    parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    part = parsed.get_body(preferencelist=("plain",))
    body = part.get_content() if part is not None else ""
    stamp = datetime.strptime(path.name.split("-", 1)[0], "%Y%m%dT%H%M%S%f")
    return Mail(timezone.make_aware(stamp, timezone.get_current_timezone()), parsed["To"], parsed["Subject"], body)


def recent(limit: int = 100) -> list[Mail]:
    folder = mail_dir()
    if not folder.is_dir():
        return []
    return [_read(path) for path in sorted(folder.glob("*.eml"), reverse=True)[:limit]]


@login_required
def mailbox(request: HttpRequest) -> HttpResponse:
    if settings.EMAIL_BACKEND != BACKEND or not is_admin(request.user):
        raise Http404("No demo mailbox here.")
    return render(request, "approvals/demo_mail.html", {"mails": recent()})
