"""The audit viewer and its streamed exports.

Who reads which events is audit.access.readable_events (the reach rule's
audit part, docs/access.md): admins everything; a department's leads and
backups its events; an owner their agents' events. Departments and agents
come from audit.access.directory(), which the app above provides: imports
flow approvals → audit.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q, QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit import access, export
from audit.models import AuditEvent
from audit.people import AuthenticatedHttpRequest, Person

PAGE_SIZE = 100
FILTERS = ("agent", "department", "actor", "verb", "object", "since", "until")


def visible_departments(user: Person) -> list[tuple[int, str]]:
    """The departments offered in the viewer's filter: (id, name)."""
    found = access.directory()
    return found.departments(None if access.is_admin(user) else found.member_department_ids(user))


def visible_events(user: Person) -> QuerySet[AuditEvent]:
    return access.readable_events(user)


def _moment(text: str, end_of_day: bool = False) -> datetime | None:
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            return None
        moment = datetime.combine(day, datetime.max.time() if end_of_day else datetime.min.time())
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def filtered(request: AuthenticatedHttpRequest) -> tuple[QuerySet[AuditEvent], dict[str, str], list[str]]:
    """The user's visible events narrowed by the query string; unreadable
    filters are reported, not silently ignored."""
    values = {name: request.GET.get(name, "").strip() for name in FILTERS}
    events = visible_events(request.user)
    errors: list[str] = []
    if values["agent"]:
        agent_id = access.directory().agent_id(values["agent"])
        events = events.filter(agent_id=agent_id if agent_id is not None else -1)
    if values["department"]:
        if values["department"].isdigit():
            events = events.filter(department_id=int(values["department"]))
        else:
            errors.append("Department must be chosen from the list.")
    if values["actor"]:
        events = events.filter(actor_label__icontains=values["actor"])
    if values["verb"]:
        events = events.filter(verb__startswith=values["verb"])
    if values["object"]:
        events = events.filter(Q(object_id=values["object"]) | Q(object_label__icontains=values["object"]))
    for name, lookup, end in (("since", "created_at__gte", False), ("until", "created_at__lte", True)):
        if values[name]:
            moment = _moment(values[name], end_of_day=end)
            if moment is None:
                errors.append(f"'{values[name]}' is not a date or time (use 2026-11-21 or 2026-11-21T14:30).")
            else:
                events = events.filter(**{lookup: moment})
    return events, values, errors


@login_required
def audit_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    events, values, errors = filtered(request)
    before = request.GET.get("before", "")
    if before.isdigit():
        events = events.filter(id__lt=int(before))
    page = list(events.order_by("-id")[: PAGE_SIZE + 1])
    query = "&".join(f"{k}={v}" for k, v in values.items() if v)
    return render(
        request,
        "audit/list.html",
        {
            "events": page[:PAGE_SIZE],
            "older": page[PAGE_SIZE - 1].id if len(page) > PAGE_SIZE else None,
            "values": values,
            "errors": errors,
            "query": query,
            "departments": visible_departments(request.user),
        },
    )


@login_required
def audit_export(request: AuthenticatedHttpRequest, fmt: str) -> StreamingHttpResponse | HttpResponse:
    events, _, errors = filtered(request)
    if errors:
        return HttpResponse(" ".join(errors), status=400, content_type="text/plain")
    events = events.order_by("id")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    lines = export.as_csv(events) if fmt == "csv" else export.as_jsonl(events)
    # An ASGI server (uvicorn) needs an async iterator to stream; WSGI a sync one.
    content = export.streamed_in_thread(lines) if isinstance(request, ASGIRequest) else lines
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response
