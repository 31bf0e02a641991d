from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import psycopg
import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import override_settings

from agents import fresh
from agents.models import Tier
from approvals import services
from approvals.models import Action, Risk
from tests.support.factories import ActionTypeFactory, AgentFactory, DepartmentFactory, GrantFactory, UserFactory
from tests.support.servers import ASGIServerThread

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.support.receivers import Receiver


# ---------------------------------------------------------------- two runs: real services, embedded default


def embedded_run() -> bool:
    """The embedded default: neither DATABASE_URL nor REDIS_URL, so SQLite,
    the in-process channel layer and in-process tasks (./test's second run)."""
    return not settings.DATABASE_URL and not settings.REDIS_URL


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """./test runs pytest twice. With real services: every test but those of
    tests/embedded/, which need the embedded default. On the embedded
    default: only the tests marked `embedded`, that is all of tests/embedded/
    and any test elsewhere marked to run on SQLite too. The other run's tests
    are deselected, never failed or skipped one by one."""
    embedded_dir = Path(__file__).parent / "embedded"
    on_embedded = embedded_run()
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        only_embedded = embedded_dir in item.path.parents
        if only_embedded:
            item.add_marker(pytest.mark.embedded)
        runs = item.get_closest_marker("embedded") is not None if on_embedded else not only_embedded
        (keep if runs else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory) -> None:
    """On the embedded default the test database is a SQLite file, as the
    product's is (WAL, one writer at a time): an in-memory database would
    share one connection's cache between threads and lock where the product doesn't."""
    if embedded_run():
        test = settings.DATABASES["default"].setdefault("TEST", {})
        test["NAME"] = str(tmp_path_factory.mktemp("embedded") / "test.sqlite3")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    # Keep each phase's report on the test, so fixtures can tell in their
    # teardown whether the test failed (browser_page screenshots then).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def _test_settings() -> Iterator[None]:
    """Settings every test runs under; a test may still override them with
    pytest-django's `settings` fixture."""
    with override_settings(
        # Seal audit events in the committing thread. The background
        # sequencer would touch the database between tests, after the test
        # database is gone, and hold a connection that blocks dropping it.
        AUDIT_SEALING="inline",
        # The default hasher's many PBKDF2 rounds cost ~0.4 s for every user a
        # factory creates and every login; tests don't need that strength.
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    ):
        yield


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """The API's per-process caches (agents.fresh) hold rows of the test
    database, which every test rolls back or flushes: each test starts empty."""
    fresh.forget_here()
    yield
    fresh.forget_here()


@pytest.fixture(scope="session", autouse=True)
def _flush_past_the_audit_triggers() -> Iterator[None]:
    """A transactional test ends with a flush, one TRUNCATE of every table,
    which the audit trail's triggers refuse (audit/migrations/0003). The
    tests connect as a superuser: switch triggers off for the flush only."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush(self: DatabaseOperations, *args: Any, **kwargs: Any) -> list[str]:
        statements = original(self, *args, **kwargs)
        return ["SET LOCAL session_replication_role = replica", *statements] if statements else statements

    with mock.patch.object(DatabaseOperations, "sql_flush", sql_flush):
        yield


@pytest.fixture(scope="session", autouse=True)
def _connection_pools_closed(django_db_setup: None) -> Iterator[None]:
    """The connection pool keeps its connections open after the last test,
    and PostgreSQL will not drop a database that has sessions: close the
    pools before pytest-django drops the test database."""
    yield
    for connection in connections.all():
        if getattr(connection, "pool", None):
            connection.close_pool()
    # A server under test runs views in executor threads that outlive it; a
    # connection such a thread took from the pool and never gave back stays
    # open after the pool closes. The test database is this run's alone
    # (./test names it per run), so end any session still on it.
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"], dbname="postgres"
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [db["NAME"]])


# ---------------------------------------------------------------- people and proposals


@pytest.fixture
def lead(db):
    return UserFactory(username="lena-lead")


@pytest.fixture
def other_lead(db):
    return UserFactory(username="omar-lead")


@pytest.fixture
def owner(db):
    return UserFactory(username="olga-owner")


@pytest.fixture
def department(lead, other_lead):
    return DepartmentFactory(name="Finance", slug="finance", leads=[lead, other_lead])


@pytest.fixture
def agent(owner, department):
    return AgentFactory(slug="refund-bot", owner=owner, department=department)


@pytest.fixture
def propose(agent):
    """Propose through the service layer: propose(tier=..., risk=..., **fields) -> Action.
    With an `amount`, the action type moves money and the payload carries it."""

    def _propose(tier: str = Tier.CONTRIBUTOR, risk: str = Risk.LOW, **fields: Any) -> Action:
        amount = fields.get("amount")
        action_type = ActionTypeFactory(risk=risk, money=amount is not None)
        GrantFactory(agent=agent, action_type=action_type, tier=tier)
        fields.setdefault("payload", {"note": "hello"})
        if amount is not None:
            fields["payload"] = {"amount": float(amount), **fields["payload"]}
        fields.setdefault("reasoning", "The customer asked for it.")
        fields.setdefault("confidence", Decimal("0.95"))
        action, _ = services.propose(agent, action_type, **fields)
        return action

    return _propose


# ---------------------------------------------------------------- real services


@pytest.fixture
def real_services() -> None:
    """Fail, never skip, when the run is not on PostgreSQL and Redis: a
    skipped integration test reads like a passing one in a summary."""
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql" or not settings.REDIS_URL:
        pytest.fail("This test needs PostgreSQL and Redis (DATABASE_URL and REDIS_URL): run it through ./test.")


@pytest.fixture
def short_lived_db_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers and servers under test open connections in their own threads.
    With CONN_MAX_AGE 0 each is closed at the end of its request or task,
    so none lingers to block the flush after the test or the final DROP
    DATABASE."""
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", 0)


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Run Celery tasks in-process, whatever CELERY_TASK_ALWAYS_EAGER says,
    for tests that need routing done but run no worker."""
    from config.celery import app

    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = saved


@pytest.fixture
def asgi_server(
    transactional_db: None, real_services: None, short_lived_db_connections: None, eager_tasks: None
) -> Iterator[ASGIServerThread]:
    """config.asgi.application (HTTP and websockets) served by uvicorn on a
    free port of 127.0.0.1, against the test database. Transactional: the
    server's threads see only committed rows, so tests commit theirs."""
    from config.asgi import application

    with ASGIServerThread(application) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A signed-webhook target on loopback (tests.support.receivers), verifying with
    the secret of tests.support.dispatching's action types."""
    from tests.support.dispatching import SECRET
    from tests.support.receivers import Receiver

    with Receiver(SECRET) as running:
        yield running


@pytest.fixture
def browser_page(
    request: pytest.FixtureRequest, asgi_server: ASGIServerThread, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Page]:
    """A fresh Chromium page whose relative URLs go to asgi_server; on a
    failed test, a screenshot lands in test-results/.

    Request data fixtures before this one: while Playwright runs, this
    thread has an event loop marked running, and async_to_sync (the channel
    layer's publishes, eager tasks) refuses to work in it.
    """
    from tests.support.browser import chromium, screenshot

    # The same running loop makes Django refuse ORM calls in the test body;
    # they are plain synchronous calls, so allow them for this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as browser:
        context = browser.new_context(base_url=asgi_server.url)
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            yield page
        finally:
            call = getattr(request.node, "rep_call", None)
            if call is not None and call.failed:
                print(f"Screenshot of the failed page: {screenshot(page, request.node.nodeid)}")
            context.close()
