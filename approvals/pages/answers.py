"""How a lead page answers a POST, in one place: with htmx, the fragment that
changed and a flash in it; without JavaScript, the same words as a message
and a redirect to the page (every form works both ways)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render

from approvals.pages.requests import PageRequest


def flash(text: str, level: int) -> dict[str, str]:
    """The flash a fragment shows: the text and the message level's tag (success, error, ...)."""
    return {"text": text, "level": messages.DEFAULT_TAGS[level]}


def answer(
    request: PageRequest,
    text: str,
    level: int,
    *,
    redirect_to: str,
    fragment: str,
    context: Callable[[], dict[str, Any]],
) -> HttpResponse:
    """`fragment` (a template#partial) rendered with `context()` and the flash
    for htmx; else `text` as a message and a redirect to `redirect_to`. The
    context is built only when the fragment is rendered."""
    if not request.htmx:
        messages.add_message(request, level, text)
        return redirect(redirect_to)
    return render(request, fragment, {**context(), "flash": flash(text, level)})
