"""One-click decisions by email: the approve and reject links of a lead's email.

A link is a `DecisionLink` row, its id signed into the URL with
django.core.signing (salt SALT, so no other signed value of the site opens
it). The row binds the link to one action, the digest of the payload the
email showed, one lead and one verdict, and holds:

- its end: DECISION_LINK_MAX_AGE_MINUTES after it was sent, never past the
  action's expiry (the signature's own age is checked too);
- its use: `used_at`, set by a conditional update in the transaction of the
  decision, so a link decides once, and a refused decision leaves it unused.

Opening a link (GET) only reads: `check` says what the lead may do, or
refuses with a `LinkRefused` that names why. Confirming (POST) calls `use`,
which runs the same checks under the action's row lock and then decides
through approvals.services exactly as the browser's buttons do: the reach
rule, the owner rule, the second approver, the digest. A link never signs
anybody in: the confirm page needs the lead logged in as themselves
(docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from approvals import reach, services
from approvals.models import Action, DecisionLink
from approvals.rules.lifecycle import IllegalTransition, Status
from audit import context
from audit.people import Person

SALT = "countersign.decision-link"
APPROVE = DecisionLink.Verdict.APPROVE
REJECT = DecisionLink.Verdict.REJECT


@dataclass(frozen=True)
class LinkRefused(Exception):
    """The link may not decide; nothing changed. `code` names the case for tests and the page."""

    code: str
    title: str
    text: str
    status: int = 409

    def __str__(self) -> str:
        return f"{self.title} {self.text}"


def max_age() -> timedelta:
    return timedelta(minutes=settings.DECISION_LINK_MAX_AGE_MINUTES)


# ---------------------------------------------------------------- issuing


def may_receive(action: Action, lead: Person) -> bool:
    """Links go only to whom the reach rule lets decide the action: never its owner."""
    return reach.reach_of(lead).decides(action)


def issue(action: Action, lead: Person, verdict: str, now: datetime | None = None) -> DecisionLink:
    now = now or timezone.now()
    end = now + max_age()
    if action.expires_at is not None:
        end = min(end, action.expires_at)
    return DecisionLink.objects.create(
        action=action,
        lead=lead,
        verdict=verdict,
        payload_digest=action.standing_digest,
        created_at=now,
        expires_at=end,
    )


def token_of(link: DecisionLink) -> str:
    return signing.dumps(str(link.pk), salt=SALT)


def path_of(link: DecisionLink) -> str:
    return reverse("decision-link", args=[token_of(link)])


def links_for(action: Action, lead: Person) -> dict[str, str]:
    """{"approve": path, "reject": path} for a lead who may decide the action, else {}."""
    if action.status != Status.PENDING or not may_receive(action, lead):
        return {}
    return {verdict: path_of(issue(action, lead, verdict)) for verdict in (APPROVE, REJECT)}


# ---------------------------------------------------------------- opening


def open_token(token: str) -> DecisionLink:
    """The link a token names, or LinkRefused: a forged or mangled token, an old signature."""
    try:
        link_id = signing.loads(token, salt=SALT, max_age=max_age())
    except signing.SignatureExpired as error:
        raise _expired() from error
    except signing.BadSignature as error:
        raise LinkRefused(
            "invalid", "This link is not valid.", "It was changed or cut short. Open the action from the queue.", 404
        ) from error
    link = DecisionLink.objects.select_related("action__agent", "action__action_type", "action__department").filter(
        pk=link_id
    )
    found = link.first()
    if found is None:
        raise LinkRefused("invalid", "This link is not valid.", "Open the action from the queue.", 404)
    return found


def _expired() -> LinkRefused:
    return LinkRefused(
        "expired",
        "This link has expired.",
        f"Decision links work for {settings.DECISION_LINK_MAX_AGE_MINUTES} minutes. Open the action from the queue.",
        410,
    )


def check(link: DecisionLink, user: Person, action: Action | None = None, now: datetime | None = None) -> None:
    """Refuse (LinkRefused) unless `user` may decide with this link now. Reads only."""
    now = now or timezone.now()
    action = action or link.action
    if user.pk != link.lead_id:
        raise LinkRefused(
            "forwarded",
            "This link was sent to someone else.",
            "A decision link works only for the lead it was emailed to, logged in as themselves.",
            403,
        )
    if link.used_at is not None:
        raise LinkRefused("used", "This link has already been used.", "Each link decides once.", 410)
    if link.expires_at <= now:
        raise _expired()
    if action.expires_at is not None and action.expires_at <= now:
        raise LinkRefused("action_expired", "This action has expired.", "Nobody may decide it any more.", 410)
    if action.status != Status.PENDING:
        raise LinkRefused(
            "decided", "This action is already decided.", f"It is {action.get_status_display().lower()}.", 409
        )
    if link.payload_digest != action.standing_digest:
        raise LinkRefused(
            "stale",
            "The payload changed since this email was sent.",
            "Another lead edited it. Read the new payload on its page before you decide.",
            409,
        )
    who = reach.reach_of(user)
    if not who.decides(action):
        if action.agent.owner_id == user.pk:
            raise LinkRefused("owner", "You own this agent.", "Another lead must decide its actions.", 403)
        raise LinkRefused(
            "reach", "You may not decide this action.", "Only the leads of its department decide it.", 403
        )
    if action.decisions.filter(user=user).standing_on(action.standing_digest).exists():
        raise LinkRefused(
            "second_approver",
            "You have already decided on this payload.",
            "Another lead must give the second approval.",
            409,
        )


# ---------------------------------------------------------------- deciding


@transaction.atomic
def use(link_id: Any, user: Person, *, reason: str = "") -> Action:
    """Decide with the link, once. The link's use and the decision commit
    together; any refusal rolls both back and raises LinkRefused."""
    link = DecisionLink.objects.select_for_update().get(pk=link_id)
    action = (
        Action.objects.select_for_update(of=("self",)).select_related("agent", "action_type").get(pk=link.action_id)
    )
    check(link, user, action)
    now = timezone.now()
    claimed = DecisionLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=now)
    if not claimed:
        raise LinkRefused("used", "This link has already been used.", "Each link decides once.", 410)
    context.update(door="email", decision_link=str(link.pk))
    try:
        with transaction.atomic():
            if link.verdict == APPROVE:
                return services.approve(action.pk, user, seen_digest=link.payload_digest)
            return services.reject(action.pk, user, reason=reason)
    except services.PayloadChanged as error:
        raise LinkRefused("stale", "The payload changed since this email was sent.", str(error), 409) from error
    except services.DecisionRefused as error:
        raise LinkRefused("refused", "This decision was refused.", str(error), 409) from error
    except IllegalTransition as error:
        raise LinkRefused("decided", "This action is already decided.", str(error), 409) from error
