"""Shared by the tests of amounts, edits and approvals bound to a payload:
an action type that moves money (its amount and currency read from the
payload), and a lead's browser that decides through the real htmx endpoints,
with the CSRF token and the payload digest its page gave it."""

from __future__ import annotations

import json
import re
from typing import Any

from django.test import Client

from approvals.models import Action, ActionType
from tests.support.factories import ActionTypeFactory

HTMX = {"HTTP_HX_REQUEST": "true"}
PAYMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "account": {"type": "string"},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string"},
        "note": {"type": "string"},
    },
    "required": ["account", "amount", "currency"],
    "additionalProperties": False,
}


def payment_type(**fields: Any) -> ActionType:
    """payments.pay: the amount at `amount`, the currency at `currency`."""
    defaults: dict[str, Any] = {
        "slug": "payments.pay",
        "payload_schema": PAYMENT_SCHEMA,
        "amount_path": "amount",
        "currency_path": "currency",
    }
    return ActionTypeFactory(**{**defaults, **fields})


def payment(amount: float, account: str = "DE89370400440532013000", **more: Any) -> dict[str, Any]:
    return {"account": account, "amount": amount, "currency": "EUR", **more}


class LeadBrowser:
    """A lead's browser: CSRF enforced, forms filled from the pages it read."""

    def __init__(self, user: Any) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.client.force_login(user)
        self.token = ""
        self.digests: dict[str, str] = {}  # action id -> digest its last page showed

    def _read(self, html: str) -> str:
        self.token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]
        return html

    def open(self, action: Action) -> str:
        """The action page; remembers the digest its approve form carries."""
        html = self._read(self.client.get(f"/actions/{action.pk}/").content.decode())
        found = re.search(r'name="payload_digest" value="([0-9a-f]{64})"', html)
        if found:
            self.digests[str(action.pk)] = found[1]
        return html

    def open_queue(self) -> str:
        """The queue page; remembers the digest of each row's approve form."""
        html = self._read(self.client.get("/queue/").content.decode())
        for action_id, digest in re.findall(r'name="digest-([0-9a-f-]{36})" value="([0-9a-f]{64})"', html):
            self.digests[action_id] = digest
        for form in re.findall(
            r'action="/actions/([0-9a-f-]{36})/approve/".*?name="payload_digest" value="([0-9a-f]{64})"', html, re.S
        ):
            self.digests.setdefault(form[0], form[1])
        return html

    def approve(self, action: Action, payload: Any = None, *, htmx: bool = True, lane: str | None = None) -> Any:
        """Post the approve form (the edit form when `payload` is given) as read from the page."""
        data = {"csrfmiddlewaretoken": self.token, "payload_digest": self.digests[str(action.pk)]}
        if payload is not None:
            data["payload"] = json.dumps(payload, indent=2)
        if lane is not None:
            data["lane"] = lane
        return self.client.post(f"/actions/{action.pk}/approve/", data, **(HTMX if htmx else {}))

    def bulk_approve(self, *actions: Action) -> Any:
        data: dict[str, Any] = {"csrfmiddlewaretoken": self.token, "action": [str(a.pk) for a in actions]}
        data.update({f"digest-{a.pk}": self.digests[str(a.pk)] for a in actions})
        return self.client.post("/queue/bulk-approve/", data, **HTMX)
