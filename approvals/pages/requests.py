"""The request a lead page's view sees, for annotations: signed in and read by htmx."""

from __future__ import annotations

from django_htmx.middleware import HtmxDetails

from audit.people import AuthenticatedHttpRequest


class PageRequest(AuthenticatedHttpRequest):
    """A request to a view behind @login_required. HtmxMiddleware (config/settings.py)
    sets `htmx` on every request: truthy when htmx sent it, with what htmx says about it."""

    htmx: HtmxDetails
