"""What an action will do, the way a lead thinks of it: an email as an
email, a refund as an order and an amount, a deletion as the record.

Read from the action type's JSON Schema (each property's title,
description, type and format: email, date, date-time, uri; the type's
amount_path is money) and rendered by one of the templates in
templates/approvals/previews/, the one the type names in the admin
(ActionType.preview_template) or, left automatic, the one its fields call
for. Every field of the payload shows, in the schema's order, with those the
schema does not know after them: a preview never hides what would be sent.

Pure functions of the action type and the payload: no database, no clock.
The templates autoescape every value; nothing here marks text safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from approvals.models import ActionType, PreviewTemplate
from approvals.rules import amounts

TEMPLATES = {
    PreviewTemplate.GENERIC: "approvals/previews/generic.html",
    PreviewTemplate.EMAIL: "approvals/previews/email.html",
    PreviewTemplate.REFUND: "approvals/previews/refund.html",
    PreviewTemplate.RECORD_DELETION: "approvals/previews/record_deletion.html",
}
# Longer than this, or with a line break, a string reads as a paragraph.
PARAGRAPH_AT = 120
SUMMARY_LENGTH = 90
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
# Fields a summary names a payment or refund by, first found first.
REFERENCES = ("order_id", "invoice_number", "reference", "vendor_id", "customer_id")


@dataclass(frozen=True)
class Field:
    """One leaf of the payload, ready to show."""

    path: str  # dotted, as approvals.reads.payload_review names fields
    label: str  # the schema's title, else the key in words
    description: str
    kind: str  # text, paragraph, email, date, datetime, uri, money, number, boolean, list, json, enum, empty
    text: str  # the value as the lead reads it
    items: tuple[str, ...] = ()  # a list's values


@dataclass(frozen=True)
class Preview:
    template: str  # a PreviewTemplate value, never automatic
    title: str
    fields: list[Field]
    money: str = ""  # "€45.00", "" when the type moves no money
    summary: str = ""
    head: list[Field] = field(default_factory=list)  # what the template lays out itself
    body: Field | None = None  # an email's text
    rest: list[Field] = field(default_factory=list)  # every other field, in order
    by_path: dict[str, Field] = field(default_factory=dict)

    @property
    def template_name(self) -> str:
        return TEMPLATES[PreviewTemplate(self.template)]


# What each template lays out itself, before the rest of the fields.
HEADS = {
    PreviewTemplate.EMAIL.value: ("from", "to", "cc", "bcc", "reply_to", "subject"),
    PreviewTemplate.REFUND.value: REFERENCES,
    PreviewTemplate.RECORD_DELETION.value: ("system", "record_type", "record_id"),
    PreviewTemplate.GENERIC.value: (),
}


def preview_of(action_type: ActionType, payload: Any) -> Preview:
    """The preview of one payload of this type."""
    schema = action_type.payload_schema if isinstance(action_type.payload_schema, dict) else {}
    payload = payload if isinstance(payload, dict) else {}
    fields = _fields(schema, payload, "", action_type.amount_path)
    template = choose_template(action_type, payload)
    by_path = {f.path: f for f in fields}
    head = [by_path[path] for path in HEADS[template] if path in by_path]
    body = by_path.get("body") if template == PreviewTemplate.EMAIL else None
    laid_out = {f.path for f in head} | ({body.path} if body else set())
    if template == PreviewTemplate.REFUND and action_type.amount_path in by_path:
        # The money line shows the amount and its currency: once is clearer.
        laid_out |= {action_type.amount_path, action_type.currency_path}
    rest = [f for f in fields if f.path not in laid_out]
    title = str(schema.get("title") or action_type.name)
    preview = Preview(template, title, fields, _money_text(action_type, payload), "", head, body, rest, by_path)
    return Preview(**{**preview.__dict__, "summary": _summary(action_type, preview)})


def summary_of(action_type: ActionType, payload: Any) -> str:
    """The one line a queue row shows: what happens if the lead approves."""
    return preview_of(action_type, payload).summary


def choose_template(action_type: ActionType, payload: dict[str, Any]) -> str:
    """The type's chosen template, or the one its fields call for."""
    if action_type.preview_template:
        return str(action_type.preview_template)
    schema = action_type.payload_schema if isinstance(action_type.payload_schema, dict) else {}
    keys = set(payload) | set(schema.get("properties") or {})
    if "to" in keys and ("subject" in keys or "body" in keys):
        return PreviewTemplate.EMAIL.value
    if action_type.amount_path:
        return PreviewTemplate.REFUND.value
    if "record_id" in keys:
        return PreviewTemplate.RECORD_DELETION.value
    return PreviewTemplate.GENERIC.value


# ---------------------------------------------------------------- fields


def _fields(schema: dict[str, Any], value: dict[str, Any], prefix: str, amount_path: str) -> list[Field]:
    properties = given if isinstance(given := schema.get("properties"), dict) else {}
    found: list[Field] = []
    for key in ordered_keys(schema, value):
        if key not in value:
            continue
        sub = nested if isinstance(nested := properties.get(key), dict) else {}
        path = f"{prefix}.{key}" if prefix else str(key)
        item = value[key]
        if isinstance(item, dict) and item:
            found.extend(_fields(sub, item, path, amount_path))
        else:
            found.append(_field(path, str(key), sub, item, amount_path))
    return found


def ordered_keys(schema: dict[str, Any], value: dict[str, Any]) -> list[str]:
    """The required fields in the schema's order of `required` (a list keeps
    its order; PostgreSQL's jsonb sorts an object's keys), then the other
    fields of the schema, then those it does not know."""
    properties = given if isinstance(given := schema.get("properties"), dict) else {}
    required = [key for key in schema.get("required") or [] if isinstance(key, str) and key in properties]
    return list(dict.fromkeys([*required, *properties, *value]))


def _field(path: str, key: str, schema: dict[str, Any], value: Any, amount_path: str) -> Field:
    label = str(schema.get("title") or key.replace("_", " ").replace("-", " ").capitalize())
    description = str(schema.get("description") or "")
    kind, text, items = _shape(path, schema, value, amount_path)
    return Field(path, label, description, kind, text, items)


def _shape(path: str, schema: dict[str, Any], value: Any, amount_path: str) -> tuple[str, str, tuple[str, ...]]:
    if value is None or value == "" or value == [] or value == {}:
        return "empty", "", ()
    if path == amount_path:
        return "money", str(value), ()
    if isinstance(value, bool):
        return "boolean", "yes" if value else "no", ()
    if isinstance(value, int | float | Decimal):
        return "number", str(value), ()
    if isinstance(value, list):
        if all(isinstance(item, str | int | float) and not isinstance(item, bool) for item in value):
            return "list", ", ".join(str(item) for item in value), tuple(str(item) for item in value)
        return "json", _json(value), ()
    if isinstance(value, dict):
        return "json", _json(value), ()
    text = str(value)
    fmt = schema.get("format")
    if fmt == "email":
        return "email", text, ()
    if fmt == "date":
        return "date", text, ()
    if fmt == "date-time":
        return "datetime", text, ()
    if fmt in ("uri", "url", "iri"):
        return "uri", text, ()
    if "enum" in schema:
        return "enum", text, ()
    max_length = schema.get("maxLength")
    long_by_schema = isinstance(max_length, int) and max_length > 2 * PARAGRAPH_AT and len(text) > 40
    if "\n" in text or len(text) > PARAGRAPH_AT or long_by_schema:
        return "paragraph", text, ()
    return "text", text, ()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- money and summary


def _money_text(action_type: ActionType, payload: Any) -> str:
    if not action_type.amount_path:
        return ""
    try:
        money = action_type.money_in(payload)
    except amounts.AmountError:
        return ""
    return money_text(money.amount, money.currency)


def money_text(amount: Decimal | None, currency: str) -> str:
    """€45.00, $1,200.00, 12.50 CHF; the amount alone without a currency."""
    if amount is None:
        return ""
    number = f"{amount:,.2f}"
    symbol = SYMBOLS.get(currency)
    if symbol:
        return f"-{symbol}{number[1:]}" if number.startswith("-") else f"{symbol}{number}"
    return f"{number} {currency}".strip()


def _summary(action_type: ActionType, preview: Preview) -> str:
    get = preview.by_path.get
    if preview.template == PreviewTemplate.EMAIL:
        to = get("to")
        recipients = to.items if to and to.items else ((to.text,) if to and to.text else ())
        who = recipients[0] if recipients else "nobody"
        more = f" (+{len(recipients) - 1})" if len(recipients) > 1 else ""
        subject = get("subject")
        line = f"Email to {who}{more}" + (f": {subject.text}" if subject and subject.text else "")
    elif preview.template == PreviewTemplate.REFUND:
        verb = "Refund" if "refund" in f"{action_type.slug} {action_type.name}".lower() else "Pay"
        reference = next((field for key in REFERENCES if (field := get(key)) and field.text), None)
        line = f"{verb} {preview.money or 'an unreadable amount'}" + (f" on {reference.text}" if reference else "")
    elif preview.template == PreviewTemplate.RECORD_DELETION:
        kind, record, system = get("record_type"), get("record_id"), get("system")
        line = "Delete " + " ".join(
            part
            for part in (
                kind.text if kind else "record",
                record.text if record else "",
                f"in {system.text}" if system else "",
            )
            if part
        )
    else:
        shown = [f for f in preview.fields if f.kind not in ("empty", "json", "paragraph")][:3]
        line = f"{preview.title}: " + "; ".join(f"{f.label}: {f.text}" for f in shown) if shown else preview.title
    return _truncate(" ".join(line.split()), SUMMARY_LENGTH)


def _truncate(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"
