"""A stand-in for the systems the demo's webhook actions touch, served at
/demo-target/ by Countersign itself, so `./run` really dispatches.

It behaves as a receiver should (docs/dispatch.md): it checks the signature
before reading the body, acts at most once per Idempotency-Key (a repeated
delivery gets the first answer again), answers with an `undo` object, and
takes rollbacks. The path picks how it behaves, so failures can be shown:

    /demo-target/<mode>/<action type>/            the dispatch
    /demo-target/<mode>/<action type>/rollback/   its rollback

mode: `ok`; `flaky` (the first delivery of each action gets a 503, the retry
succeeds); `hiccup` (as flaky, for one action in HICCUP_EVERY only: a retry to
see on its page, while the failed share of attempts stays far under the
dispatch-error detector's 50 %); `reject` (422: a permanent failure); `down` (503 every time);
`slow` (answers after the action type's time-out).

Effects are kept in the cache (Redis with real services), a week long.
On when DEMO_TARGET is (by default in the embedded run only); else 404.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents.signing import SIGNATURE_HEADER, verify_signature
from approvals.models import ActionType

log = logging.getLogger(__name__)

MODES = ("ok", "flaky", "hiccup", "reject", "down", "slow")
HICCUP_EVERY = 5
KEPT_FOR = 7 * 24 * 3600


def _refusal(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _verified(request: HttpRequest, mode: str, slug: str) -> tuple[dict[str, Any], str] | JsonResponse:
    """The request's body and Idempotency-Key once its signature checks out, else the refusal."""
    if not settings.DEMO_TARGET:
        raise Http404("The demo target is off (DEMO_TARGET).")
    if mode not in MODES:
        return _refusal(404, f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    action_type = ActionType.objects.filter(slug=slug).only("webhook_secret").first()
    if action_type is None:
        return _refusal(404, f"This target does not handle {slug}.")
    if not verify_signature(action_type.webhook_secret, request.body, request.headers.get(SIGNATURE_HEADER)):
        return _refusal(401, "Bad or stale X-Countersign-Signature.")
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        return _refusal(400, "An Idempotency-Key header is required.")
    return json.loads(request.body), key


def _misbehave(mode: str, key: str, slug: str) -> JsonResponse | None:
    """The failure the mode asks for, if any."""
    if mode == "reject":
        return _refusal(422, "The demo target rejects this request (mode reject).")
    if mode == "down":
        return _refusal(503, "The demo target is down (mode down).")
    if mode == "flaky" and cache.add(f"demo-target:seen:{key}", True, KEPT_FOR):
        return _refusal(503, "The demo target failed this first delivery (mode flaky); a retry will succeed.")
    if mode == "hiccup" and cache.add(f"demo-target:seen:{key}", True, KEPT_FOR):
        counter = f"demo-target:hiccup:{slug}"
        cache.add(counter, 0, KEPT_FOR)
        if cache.incr(counter) % HICCUP_EVERY == 1:
            return _refusal(503, "The demo target failed this first delivery (mode hiccup); a retry will succeed.")
    if mode == "slow":
        timeout = ActionType.objects.filter(slug=slug).values_list("webhook_timeout_seconds", flat=True).first()
        time.sleep((timeout or 10) + 1)
    return None


def _accepted(request: HttpRequest, mode: str, slug: str) -> tuple[dict[str, Any], str] | JsonResponse:
    """The body and key of a verified request the mode lets through, else the answer to give."""
    verified = _verified(request, mode, slug)
    if isinstance(verified, JsonResponse):
        return verified
    return _misbehave(mode, verified[1], slug) or verified


@csrf_exempt
@require_POST
def dispatch(request: HttpRequest, mode: str, slug: str) -> JsonResponse:
    accepted = _accepted(request, mode, slug)
    if isinstance(accepted, JsonResponse):
        return accepted
    body, key = accepted
    reference = f"{slug.split('.')[-1].upper()}-{uuid.uuid4().hex[:10]}"
    effect = {"reference": reference, "action": body.get("id"), "undo": {"reference": reference}}
    if cache.add(f"demo-target:effect:{key}", effect, KEPT_FOR):
        log.info("Demo target: carried out %s for action %s as %s", slug, body.get("id"), reference)
        return JsonResponse(effect, status=201)
    # A repeat of a delivery already carried out: the same answer, no second effect.
    return JsonResponse(cache.get(f"demo-target:effect:{key}") or effect, status=200)


@csrf_exempt
@require_POST
def rollback(request: HttpRequest, mode: str, slug: str) -> JsonResponse:
    accepted = _accepted(request, mode, slug)
    if isinstance(accepted, JsonResponse):
        return accepted
    body, key = accepted
    reference = (body.get("undo") or {}).get("reference")
    if not reference:
        return _refusal(422, "Nothing to roll back: the undo object has no reference.")
    if cache.add(f"demo-target:rollback:{key}", True, KEPT_FOR):
        log.info("Demo target: rolled back %s (%s)", reference, slug)
    return JsonResponse({"rolled_back": reference})


urlpatterns = [
    path("<str:mode>/<str:slug>/", dispatch, name="demo-target"),
    path("<str:mode>/<str:slug>/rollback/", rollback, name="demo-target-rollback"),
]
