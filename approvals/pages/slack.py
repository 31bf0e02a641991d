"""Slack's interactions endpoint: POST /slack/interactions/ (docs/slack.md).

Slack signs each request: `X-Slack-Signature` is v0=HMAC-SHA256 of
"v0:<X-Slack-Request-Timestamp>:<body>" with SLACK_SIGNING_SECRET.
slack-sdk's SignatureVerifier checks it and refuses a timestamp more than
five minutes away; a signature seen before is a replay (SlackDelivery, unique)
and is refused too. Only then is the click read and acted on
(approvals.notify.slack.decide). What to tell the clicker is posted to them alone by
a task after the commit; the answer to Slack is an empty 200.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from approvals import tasks
from approvals.models import SlackDelivery
from approvals.notify import slack

log = logging.getLogger(__name__)

# Slack's window: a request older (or newer) than this is refused, so a
# delivery row older than it can never match a request that passes.
WINDOW = timedelta(minutes=5)


def _verified(request: HttpRequest) -> bool:
    from slack_sdk.signature import SignatureVerifier

    if not settings.SLACK_SIGNING_SECRET:
        return False
    try:
        return SignatureVerifier(settings.SLACK_SIGNING_SECRET).is_valid(
            body=request.body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
        )
    except (ValueError, UnicodeDecodeError):  # a timestamp that is not a number, a body that is not UTF-8
        return False


def _first_delivery(signature: str) -> bool:
    now = timezone.now()
    SlackDelivery.objects.filter(received_at__lt=now - 2 * WINDOW).delete()
    try:
        with transaction.atomic():
            SlackDelivery.objects.create(signature=signature, received_at=now)
    except IntegrityError:
        return False
    return True


@csrf_exempt  # Slack cannot send our CSRF token; its signature stands for it
@require_POST
def interactions(request: HttpRequest) -> HttpResponse:
    if not _verified(request):
        return HttpResponse("Invalid or stale Slack signature.", status=401, content_type="text/plain")
    if not _first_delivery(request.headers["X-Slack-Signature"]):
        return HttpResponse("This request was already received.", status=409, content_type="text/plain")
    try:
        payload = json.loads(request.POST.get("payload", ""))
    except json.JSONDecodeError:
        return HttpResponse("No interaction payload.", status=400, content_type="text/plain")
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return HttpResponse(status=200)  # other interactions are not ours to act on
    answer = slack.decide(payload)
    channel, slack_user_id = slack.channel_of(payload), str((payload.get("user") or {}).get("id", ""))
    if answer and channel and slack_user_id:
        transaction.on_commit(lambda: tasks.tell_slack_user.delay(channel, slack_user_id, answer), robust=True)
    return HttpResponse(status=200)
