"""Slack: new pending actions posted to their department's channel, decided
with its buttons, and every posted message kept up to date (docs/slack.md).

- Posting (`post_new_action`) and updating (`update_messages`) run in Celery
  tasks after the change committed, never in a request; each call goes
  through slack-sdk's WebClient at SLACK_API_URL with SLACK_BOT_TOKEN.
- A click reaches `decide` through the interactions endpoint
  (approvals/pages/slack.py), which has verified Slack's signature and
  refused replays. The Slack user is linked to a Countersign user by the
  verified email Slack reports for them (users.info), or by an admin
  (SlackIdentity); then approve and reject go through approvals.services
  exactly as the browser's buttons do, with `door: "slack"` in the audit
  event's context. A refusal is told to that Slack user alone (ephemeral).

Agent-written text (the payload, the reasoning) goes into Block Kit as
plain_text, never mrkdwn, so it cannot format, link or mention anyone.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from approvals import services
from approvals.models import Action, SlackIdentity, SlackMessage
from approvals.notify import emails as notifications
from approvals.reads import previews
from approvals.rules.lifecycle import IllegalTransition, Status
from audit import context
from audit.people import Person

log = logging.getLogger(__name__)

APPROVE = "approve"
REJECT = "reject"
OPEN = "open"
REASON_BLOCK = "reason"
REASON_INPUT = "reason_input"
# Block Kit's limits: a text object 3,000 characters, a section 10 fields of 2,000.
TEXT_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10


def enabled() -> bool:
    return bool(settings.SLACK_BOT_TOKEN)


def client() -> Any:
    from slack_sdk import WebClient  # imported where used: the server starts without Slack configured

    return WebClient(
        token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, timeout=settings.SLACK_TIMEOUT_SECONDS
    )


# ---------------------------------------------------------------- the message


def _plain(text: str, limit: int = TEXT_MAX) -> dict[str, Any]:
    text = text or " "
    return {"type": "plain_text", "text": text if len(text) <= limit else text[: limit - 1] + "…", "emoji": False}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _plain(text)}


def fallback_text(action: Action) -> str:
    return f"{action.action_type.name} by {action.agent.name} waits for a decision in {action.department.name}"


def _outcome(action: Action) -> str:
    if action.status == Status.PENDING:
        approvals = services.approvers_of(action, action.standing_digest)
        required = action.action_type.approvals_required
        return f"Waiting for a decision ({approvals} of {required} approvals)." if approvals else ""
    deciders = ", ".join(sorted({d.user.get_username() for d in action.decisions.select_related("user")}))
    by = f" by {deciders}" if deciders else ""
    return f"{action.get_status_display()}{by}. No more decisions here."


def blocks_for(action: Action) -> list[dict[str, Any]]:
    """The message of an action: what it will do, why, the policy's reason, and
    (while it waits) a reason field and the Approve / Reject / Open buttons."""
    preview = previews.preview_of(action.action_type, action.effective_payload)
    fields = [_plain(f"{f.label}: {f.text}", FIELD_MAX) for f in preview.fields[:FIELDS_MAX]]
    blocks: list[dict[str, Any]] = [
        _section(f"{action.action_type.name} by {action.agent.name} ({action.department.name})"),
        _section(
            f"What it will do: {preview.summary or preview.title}" + (f" — {preview.money}" if preview.money else "")
        ),
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append(_section(f"Reasoning: {action.reasoning}"))
    blocks.append(_section(f"Policy: {action.get_verdict_display()}: {action.verdict_reason or '—'}"))
    outcome = _outcome(action)
    if outcome:
        blocks.append(_section(outcome))
    url = notifications.action_url(action)
    if action.status != Status.PENDING:
        blocks.append({"type": "actions", "elements": [_open_button(url)]})
        return blocks
    value = f"{action.pk}:{action.standing_digest}"
    blocks.append(
        {
            "type": "input",
            "block_id": REASON_BLOCK,
            "optional": True,
            "label": _plain("Reason (needed to reject; goes back to the agent)"),
            "element": {"type": "plain_text_input", "action_id": REASON_INPUT, "multiline": True},
        }
    )
    blocks.append(
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "text": _plain("Approve"), "value": value},
                {"type": "button", "action_id": REJECT, "style": "danger", "text": _plain("Reject"), "value": value},
                _open_button(url),
            ],
        }
    )
    return blocks


def _open_button(url: str) -> dict[str, Any]:
    return {"type": "button", "action_id": OPEN, "text": _plain("Open"), "url": url}


# ---------------------------------------------------------------- posting and updating


def _action(action_id: Any) -> Action | None:
    return Action.objects.select_related("agent", "action_type", "department").filter(pk=action_id).first()


def post_new_action(action_id: Any) -> SlackMessage | None:
    """Post a pending action to its department's channel, once per channel."""
    action = _action(action_id)
    if action is None or action.status != Status.PENDING or not enabled():
        return None
    channel = action.department.slack_channel
    if not channel or SlackMessage.objects.filter(action=action, channel=channel).exists():
        return None
    answer = client().chat_postMessage(channel=channel, text=fallback_text(action), blocks=blocks_for(action))
    try:
        return SlackMessage.objects.create(action=action, channel=answer["channel"], ts=answer["ts"])
    except IntegrityError:  # a concurrent run posted it too; keep the first
        log.warning("Action %s was posted twice to %s", action.pk, channel)
        return None


def update_messages(action_id: Any) -> int:
    """Rewrite every message posted about the action to show where it stands now."""
    action = _action(action_id)
    if action is None or not enabled():
        return 0
    messages = list(action.slack_messages.all())
    if not messages:
        return 0
    blocks, text = blocks_for(action), fallback_text(action)
    slack = client()
    for message in messages:
        slack.chat_update(channel=message.channel, ts=message.ts, text=text, blocks=blocks)
    return len(messages)


def tell(channel: str, slack_user_id: str, text: str) -> None:
    """A message only that Slack user sees."""
    client().chat_postEphemeral(channel=channel, user=slack_user_id, text=text)


# ---------------------------------------------------------------- who clicked


def user_of(slack_user_id: str) -> Person | None:
    """The Countersign user linked to this Slack user: the stored link, else
    the one active user whose email is the verified email Slack reports."""
    identity = SlackIdentity.objects.select_related("user").filter(slack_user_id=slack_user_id).first()
    if identity is not None:
        return identity.user if identity.user.is_active else None
    from slack_sdk.errors import SlackApiError

    try:
        answer = client().users_info(user=slack_user_id)
    except SlackApiError:
        log.warning("Slack could not tell who %s is", slack_user_id)
        return None
    person = answer.get("user") or {}
    email = (person.get("profile") or {}).get("email") or ""
    if not email or not person.get("is_email_confirmed") or person.get("deleted") or person.get("is_bot"):
        return None
    users = list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])
    if len(users) != 1:
        return None  # nobody, or two accounts share the address: an admin links by hand
    SlackIdentity.objects.get_or_create(slack_user_id=slack_user_id, defaults={"user": users[0], "email": email})
    return users[0]


# ---------------------------------------------------------------- a click


def _reason(payload: dict[str, Any]) -> str:
    values = ((payload.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
    return ((values.get(REASON_INPUT) or {}).get("value") or "").strip()


def decide(payload: dict[str, Any]) -> str:
    """Act on one button click (a block_actions payload); returns what to
    tell the clicker. Every refusal changes nothing."""
    clicked = (payload.get("actions") or [{}])[0]
    verb = clicked.get("action_id")
    if verb not in (APPROVE, REJECT):
        return ""  # Open is a link: Slack reports the click, nothing to do
    action_id, _, digest = str(clicked.get("value", "")).partition(":")
    slack_user_id = str((payload.get("user") or {}).get("id", ""))
    user = user_of(slack_user_id) if slack_user_id else None
    if user is None:
        return (
            "Your Slack account is not linked to a Countersign user: Slack did not report a verified email "
            "that matches one. Ask an admin to link it (Admin → Slack identities)."
        )
    try:
        action = Action.objects.select_related("agent", "department").filter(pk=UUID(action_id)).first()
    except ValueError:
        action = None
    if action is None:
        return "This action does not exist."
    context.update(door="slack", slack_user=slack_user_id)
    try:
        with transaction.atomic():
            if verb == APPROVE:
                action = services.approve(action.pk, user, seen_digest=digest)
            else:
                action = services.reject(action.pk, user, reason=_reason(payload))
    except services.DecisionRefused as error:
        return f"Not done: {error}"
    except IllegalTransition:
        action.refresh_from_db()
        return f"Not done: this action is already {action.get_status_display().lower()}."
    if action.status == Status.PENDING:
        return "Your approval is recorded. This critical action waits for a second approval from another lead."
    return f"{action.get_status_display()}: {action.action_type.slug}."


def channel_of(payload: dict[str, Any]) -> str:
    return str((payload.get("channel") or {}).get("id", ""))
