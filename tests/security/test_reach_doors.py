"""Every door, every role (docs/access.md): each URL pattern of the project,
walked from the root resolver, has an explicit reach decision here, so a new
page without one fails `test_every_url_pattern_has_a_reach_decision`. The
doors config.asgi serves outside Django's URLs (/mcp/) are in ASGI_DOORS.
The sockets are in test_reach_sockets.py.

An outcome is what the role gets:
- ok: the page (200); lists / empty: a list page with or without the world's object;
- done: the act took effect; refused: the page answered, nothing changed;
- 404: the object's existence stays private; 403: seen, but not theirs to do;
- 401: the agent API, for keys only; login: sent to log in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from agents.models import AgentReview, AgentStatus
from agents.services import suspend_agent
from approvals.models import Action, Alert, Decision, GatewayState
from approvals.rules.lifecycle import Status
from approvals.services import gateway
from audit.log import Actor
from tests.support.reach_world import ROLES, World, build

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Probe:
    method: str
    url: str  # formatted with World.ids
    kind: str  # page, list, act, api
    expected: str  # one outcome per role, in ROLES order
    data: dict[str, str] = field(default_factory=dict)
    check: Callable[[World, Any], bool] = lambda world, response: True
    setup: Callable[[World], None] = lambda world: None
    htmx: bool = False  # asked as htmx asks: the same door, a fragment for an answer


def _status(action: Action) -> str:
    return Action.objects.get(pk=action.pk).status


def _html(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def _shows(text: Callable[[World], str]) -> Callable[[World, Any], bool]:
    return lambda world, response: text(world) in _html(response)


def _pause(world: World) -> None:
    GatewayState.objects.update_or_create(pk=1, defaults={"paused": True, "reason": "Set up for the test."})
    gateway.read()


def _suspended_by_the_breaker(world: World) -> None:
    suspend_agent(world.agent, actor=Actor.system("circuit breaker"), reason="Three failures in a row.")


# Same expectation for every decision on one action: the queue's deciders act,
# who sees it is refused, who does not gets a 404.
DECIDES = "done 404 refused done refused refused refused refused login"
SEES_ACTION = "ok 404 ok ok ok ok ok ok login"
SEES_AGENT = "ok 404 ok ok ok ok ok ok login"
LISTS_AGENT = "lists empty lists lists lists lists lists lists login"
ADMIN_ONLY = "403 403 403 403 403 403 403 done login"
ANY_USER = "ok ok ok ok ok ok ok ok login"
KEYS_ONLY = "401 401 401 401 401 401 401 401 401"

DOORS: dict[str, list[Probe]] = {
    "queue/": [
        Probe(
            "GET",
            "/queue/",
            "list",
            "lists empty empty lists empty empty lists empty login",
            check=_shows(lambda w: f'id="action-{w.pending.pk}"'),
        ),
        Probe(
            "GET",
            "/queue/",
            "list",
            "lists empty empty lists empty empty lists empty login",
            check=_shows(lambda w: f'id="action-{w.pending.pk}"'),
            htmx=True,
        ),
    ],
    "queue/bulk-approve/": [
        Probe(
            "POST",
            "/queue/bulk-approve/",
            "act",
            "done refused refused done refused refused refused refused login",
            data={"action": "{pending}"},
            check=lambda w, r: _status(w.pending) == Status.APPROVED,
        )
    ],
    # The queue's preview pane: the same reach as the action page.
    "queue/preview/<uuid:action_id>/": [Probe("GET", "/queue/preview/{pending}/", "page", SEES_ACTION)],
    "actions/<uuid:action_id>/": [Probe("GET", "/actions/{pending}/", "page", SEES_ACTION)],
    "actions/<uuid:action_id>/approve/": [
        Probe(
            "POST",
            "/actions/{pending}/approve/",
            "act",
            DECIDES,
            check=lambda w, r: _status(w.pending) == Status.APPROVED,
        ),
        Probe(
            "POST",
            "/actions/{pending}/approve/",
            "act",
            DECIDES,
            data={"lane": "pending"},
            check=lambda w, r: _status(w.pending) == Status.APPROVED,
            htmx=True,
        ),
    ],
    "actions/<uuid:action_id>/reject/": [
        Probe(
            "POST",
            "/actions/{pending}/reject/",
            "act",
            DECIDES,
            data={"reason": "Not this one."},
            check=lambda w, r: _status(w.pending) == Status.REJECTED,
        )
    ],
    "actions/<uuid:action_id>/veto/": [
        Probe(
            "POST",
            "/actions/{vetoable}/veto/",
            "act",
            DECIDES,
            data={"reason": "Stop it."},
            check=lambda w, r: _status(w.vetoable) == Status.REJECTED,
        )
    ],
    "actions/<uuid:action_id>/shadow-mark/": [
        Probe(
            "POST",
            "/actions/{shadowed}/shadow-mark/",
            "act",
            DECIDES,
            data={"mark": "approve"},
            check=lambda w, r: Decision.objects.filter(action=w.shadowed).exists(),
        )
    ],
    "actions/<uuid:action_id>/rollback/": [
        Probe(
            "POST",
            "/actions/{succeeded}/rollback/",
            "act",
            DECIDES,
            data={"reason": "Wrong order."},
            check=lambda w, r: _status(w.succeeded) == Status.ROLLBACK_REQUESTED,
        )
    ],
    "gateway/pause/": [
        Probe(
            "POST",
            "/gateway/pause/",
            "act",
            ADMIN_ONLY,
            data={"reason": "Incident."},
            check=lambda w, r: gateway.read().paused,
        )
    ],
    "gateway/resume/": [
        Probe(
            "POST",
            "/gateway/resume/",
            "act",
            ADMIN_ONLY,
            data={"reason": "Fixed."},
            setup=_pause,
            check=lambda w, r: not gateway.read().paused,
        )
    ],
    "settings/": [Probe("GET", "/settings/", "page", ANY_USER)],
    # The policy simulator (tests/replay/): admins and the departments' leads; a lead replays only their own.
    "simulator/": [
        Probe("GET", "/simulator/", "page", "ok ok 404 404 404 ok ok ok login"),
        Probe(
            "POST",
            "/simulator/",
            "page",
            "ok 404 404 404 404 404 ok ok login",
            data={"kind": "grant", "target": "{grant}", "tier": "executor"},
        ),
    ],
    "dashboard/": [
        Probe(
            "GET",
            "/dashboard/",
            "list",
            "lists empty lists lists empty empty lists lists login",
            check=lambda w, r: (
                r.get("Location") == "/departments/finance/" or 'href="/departments/finance/"' in _html(r)
            ),
        )
    ],
    "departments/<slug:slug>/": [
        Probe("GET", "/departments/{department}/", "page", "ok 404 ok ok 404 404 ok ok login")
    ],
    "alerts/": [
        Probe(
            "GET",
            "/alerts/",
            "list",
            "lists empty lists lists lists lists lists lists login",
            check=_shows(lambda w: w.alert.message),
        )
    ],
    "alerts/<int:alert_id>/acknowledge/": [
        Probe(
            "POST",
            "/alerts/{alert}/acknowledge/",
            "act",
            "done 404 done done done done done done login",
            check=lambda w, r: Alert.objects.get(pk=w.alert.pk).acknowledged_at is not None,
        )
    ],
    "reviews/": [Probe("GET", "/reviews/", "list", LISTS_AGENT, check=_shows(lambda w: "/agents/refund-bot/"))],
    "agents/<slug:slug>/reviews/": [
        Probe("GET", "/agents/{agent}/reviews/", "page", SEES_AGENT),
        Probe(
            "POST",
            "/agents/{agent}/reviews/",
            "act",
            "done 404 refused refused refused refused refused done login",
            data={"outcome": "keep", "notes": "Still refunding the right orders."},
            check=lambda w, r: AgentReview.objects.exists(),
        ),
    ],
    "agents/": [Probe("GET", "/agents/", "list", LISTS_AGENT, check=_shows(lambda w: 'href="/agents/refund-bot/"'))],
    "agents/<slug:slug>/": [Probe("GET", "/agents/{agent}/", "page", SEES_AGENT)],
    "agents/<slug:slug>/suspend/": [
        Probe(
            "POST",
            "/agents/{agent}/suspend/",
            "act",
            "done 404 403 403 403 403 done done login",
            check=lambda w, r: _agent_status(w) == AgentStatus.SUSPENDED,
        ),
        Probe(
            "POST",
            "/agents/{agent}/suspend/",
            "act",
            "done 404 403 403 403 403 done done login",
            check=lambda w, r: _agent_status(w) == AgentStatus.SUSPENDED,
            htmx=True,
        ),
    ],
    "agents/<slug:slug>/resume/": [
        Probe(
            "POST",
            "/agents/{agent}/resume/",
            "act",
            "done 404 403 403 403 403 403 done login",
            data={"reason": "The target is back."},
            setup=_suspended_by_the_breaker,
            check=lambda w, r: _agent_status(w) == AgentStatus.ACTIVE,
        )
    ],
    # Evaluating and promoting pass the reach, then trust's own rule answers (tests/pages/test_agent_trust_pages.py).
    "agents/<slug:slug>/evaluate/": [
        Probe("POST", "/agents/{agent}/evaluate/", "act", "done 404 403 403 403 403 403 done login")
    ],
    "agents/<slug:slug>/grants/<int:grant_id>/promote/": [
        Probe("POST", "/agents/{agent}/grants/{grant}/promote/", "act", "done 404 403 403 403 403 403 done login")
    ],
    "audit/": [Probe("GET", "/audit/", "list", LISTS_AGENT, check=_shows(lambda w: f"/actions/{w.pending.pk}/"))],
    "^audit/export\\.(?P<fmt>csv|jsonl)$": [
        Probe("GET", "/audit/export.csv", "list", LISTS_AGENT, check=_shows(lambda w: str(w.pending.pk))),
        Probe("GET", "/audit/export.jsonl", "list", LISTS_AGENT, check=_shows(lambda w: str(w.pending.pk))),
    ],
    # An email's one-click link: only the lead it was sent to, logged in as themselves
    # (tests/notify/test_decision_links.py has every refusal).
    "decide/<str:token>/": [
        Probe("GET", "{approve_link}", "page", "ok 403 403 403 403 403 403 403 login"),
        Probe(
            "POST",
            "{approve_link}",
            "act",
            "done 403 403 403 403 403 403 403 login",
            check=lambda w, r: _status(w.pending) == Status.APPROVED,
        ),
    ],
    # Slack's interactions: Slack's signature only, never a session (tests/notify/test_slack.py).
    "slack/interactions/": [Probe("POST", "/slack/interactions/", "api", KEYS_ONLY)],
    # The agent API answers agents' keys, never a person's session.
    "api/v1/actions/": [Probe("GET", "/api/v1/actions/", "api", KEYS_ONLY)],
    "api/v1/actions/<uuid:pk>/": [Probe("GET", "/api/v1/actions/{pending}/", "api", KEYS_ONLY)],
    "api/v1/actions/<uuid:pk>/cancel/": [Probe("POST", "/api/v1/actions/{pending}/cancel/", "api", KEYS_ONLY)],
    "api/v1/actions/<uuid:pk>/result/": [Probe("POST", "/api/v1/actions/{succeeded}/result/", "api", KEYS_ONLY)],
    "api/v1/me/": [Probe("GET", "/api/v1/me/", "api", KEYS_ONLY)],
    "api/v1/action-types/": [Probe("POST", "/api/v1/action-types/", "api", KEYS_ONLY)],
    # The embedded run's mailbox: an admin's, and only with its mail backend (off here: tests use locmem);
    # tests/demo/test_demo_mail.py opens it with the backend on.
    "demo/mail/": [Probe("GET", "/demo/mail/", "page", "404 404 404 404 404 404 404 404 login")],
}

# Doors config.asgi serves beside Django's URLs (they are not URL patterns):
# the MCP endpoint answers agents' keys only, as the agent API does.
ASGI_DOORS: dict[str, list[Probe]] = {
    "mcp/": [Probe("POST", "/mcp/", "api", KEYS_ONLY)],
}

# Open to anyone by design, each for its reason.
PUBLIC = {
    "": "redirects to the queue, which asks to log in",
    "favicon.ico": "the icon browsers ask for: a redirect to a static file",
    "login/": "the login page",
    "logout/": "logging out",
    "oidc/authenticate/": "single sign-on's start: to the provider; 404 unless configured (test_sso_oidc.py)",
    "oidc/callback/": "single sign-on's return: logs in only with this session's state (test_sso_oidc.py)",
    "healthz": "load balancers' health check: up or down",
    "metrics": "Prometheus: by address or bearer token (tests/monitoring/test_metrics_endpoint.py)",
    "api/schema/": "the agent API's OpenAPI schema",
    "api/docs/": "the agent API's browsable documentation",
    "demo-target/<str:mode>/<str:slug>/": "the demo's stand-in target: 404 unless DEMO_TARGET",
    "demo-target/<str:mode>/<str:slug>/rollback/": "the demo's stand-in target: 404 unless DEMO_TARGET",
}

# Django's admin site: staff with model permissions, its own login (test_the_admin_site_...).
ADMIN_PREFIX = "admin/"


def _agent_status(world: World) -> str:
    world.agent.refresh_from_db(fields=["status"])
    return world.agent.status


def url_patterns(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from url_patterns(entry.url_patterns, prefix + str(entry.pattern))
        else:
            assert isinstance(entry, URLPattern)
            yield prefix + str(entry.pattern), entry


def test_every_url_pattern_has_a_reach_decision():
    walked = {route for route, _ in url_patterns() if not route.startswith(ADMIN_PREFIX)}
    assert walked == set(DOORS) | set(PUBLIC), (
        "a URL pattern without a reach decision (add it to DOORS or PUBLIC), or a stale entry"
    )
    assert not set(DOORS) & set(PUBLIC)
    assert not set(ASGI_DOORS) & (set(DOORS) | set(PUBLIC))
    for probes in [*DOORS.values(), *ASGI_DOORS.values()]:
        for probe in probes:
            assert len(probe.expected.split()) == len(ROLES)


def test_the_admin_site_holds_every_admin_pattern_and_sends_everyone_else_to_its_login(client):
    """Under admin/ Django's admin decides, by staff status and model permissions."""
    (site,) = [entry for entry in get_resolver().url_patterns if str(entry.pattern) == ADMIN_PREFIX]
    assert isinstance(site, URLResolver) and (site.app_name, site.namespace) == ("admin", admin.site.name)
    client.force_login(build("lead").lead)  # a lead, not staff
    for url in ("/admin/", "/admin/approvals/action/", "/admin/audit/auditevent/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


def _outcome(world: World, probe: Probe, response: Any) -> str:
    status = response.status_code
    if status in (401, 403, 404):
        return str(status)
    if status == 302 and response["Location"].startswith("/login/"):
        return "login"
    if probe.kind == "list":
        assert status in (200, 302), (probe.url, status)
        return "lists" if probe.check(world, response) else "empty"
    if probe.kind == "page":
        assert status == 200, (probe.url, status)
        return "ok"
    assert status in (200, 302, 400, 422), (probe.url, status)
    return "done" if probe.check(world, response) else "refused"


def test_the_asgi_app_hands_exactly_these_paths_to_its_own_doors():
    from approvals.mcp import door

    def http(path: str) -> dict[str, Any]:
        return {"type": "http", "path": path}

    assert all(door.wants(http("/" + route)) for route in ASGI_DOORS)
    assert door.wants(http("/mcp"))
    assert not any(door.wants(http(path)) for path in ("/queue/", "/mcpx/", "/api/v1/actions/", "/"))
    assert not door.wants({"type": "websocket", "path": "/mcp/"})


async def _asgi_status(method: str, path: str, cookie: str) -> int:
    """One request to config.asgi.application as uvicorn would make it; its status."""
    from config.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"cookie", cookie.encode()),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}'
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await application(scope, receive, send)
    return statuses[0]


def _try_asgi(client: Client, probe: Probe) -> str:
    """A person's session (or none) at an ASGI door: what _outcome would call it."""
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items())
    status = async_to_sync(_asgi_status)(probe.method, probe.url, cookie)
    assert status in (401, 403, 404), (probe.url, status)
    return str(status)


def _try(world: World, client: Client, probe: Probe) -> str:
    """Each probe in a savepoint rolled back after it: every door meets the same world."""
    with transaction.atomic():
        probe.setup(world)
        url = probe.url.format(**world.ids)
        data = {name: value.format(**world.ids) for name, value in probe.data.items()}
        headers = {"HTTP_HX_REQUEST": "true"} if probe.htmx else {}
        response = client.get(url, **headers) if probe.method == "GET" else client.post(url, data, **headers)
        outcome = _outcome(world, probe, response)
        transaction.set_rollback(True)
    return outcome


@pytest.mark.parametrize("role", ROLES)
def test_each_door_gives_each_role_what_the_reach_rule_says(role):
    world = build(role)
    client = Client()
    if world.user is not None:
        client.force_login(world.user)
    column = ROLES.index(role)
    got, expected = {}, {}
    for route, probes in DOORS.items():
        for probe in probes:
            key = f"{probe.method} {route}" + (" (htmx)" if probe.htmx else "")
            expected[key] = probe.expected.split()[column]
            got[key] = _try(world, client, probe)
    for route, probes in ASGI_DOORS.items():
        for probe in probes:
            key = f"{probe.method} {route} (asgi)"
            expected[key] = probe.expected.split()[column]
            got[key] = _try_asgi(client, probe)
    wrong = {key: f"got {got[key]}, expected {expected[key]}" for key in got if got[key] != expected[key]}
    assert not wrong, f"{role}: {wrong}"
