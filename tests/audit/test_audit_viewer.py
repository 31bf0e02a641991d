from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth.models import Permission

from audit.chain import seal_all
from audit.export import parse_jsonl
from audit.log import Actor, record
from audit.models import AuditEvent
from tests.support.factories import DepartmentFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_departments(department, lead):
    sales_lead = UserFactory(username="sara-sales")
    sales = DepartmentFactory(name="Sales", slug="sales", leads=[sales_lead])
    record("test.finance_thing", department, actor=Actor.system(), department_id=department.pk, after={"x": "ü"})
    record("test.sales_thing", sales, actor=Actor.system(), department_id=sales.pk)
    seal_all()
    return department, sales, sales_lead


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_a_lead_sees_only_their_departments_events(client, lead, two_departments):
    client.force_login(lead)
    page = client.get("/audit/").content.decode()
    assert "test.finance_thing" in page
    assert "test.sales_thing" not in page


def test_a_lead_cannot_export_another_departments_events(client, lead, two_departments):
    _, sales, _ = two_departments
    client.force_login(lead)
    body = _body(client.get("/audit/export.jsonl", {"department": sales.pk}))
    assert body == ""
    body = _body(client.get("/audit/export.csv"))
    assert "test.finance_thing" in body and "test.sales_thing" not in body


def test_a_lead_cannot_open_another_departments_action_page(client, lead, propose, two_departments):
    action = propose()
    _, _, sales_lead = two_departments
    client.force_login(sales_lead)
    assert client.get(f"/actions/{action.pk}/").status_code == 404
    client.force_login(lead)
    page = client.get(f"/actions/{action.pk}/").content.decode()
    assert "action.proposed" in page


def test_an_admin_sees_everything_and_filters_by_verb(client, two_departments):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    page = client.get("/audit/", {"verb": "test.sales"}).content.decode()
    assert "test.sales_thing" in page and "test.finance_thing" not in page


def test_an_auditor_with_the_view_permission_sees_everything(client, two_departments):
    auditor = UserFactory(username="audrey")
    auditor.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client.force_login(auditor)
    body = _body(client.get("/audit/export.jsonl"))
    verbs = {row["verb"] for row in parse_jsonl(body.splitlines())}
    assert {"test.finance_thing", "test.sales_thing"} <= verbs


def test_exports_round_trip_every_field(client, two_departments):
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    rows = list(parse_jsonl(_body(client.get("/audit/export.jsonl")).splitlines()))
    stored = {e.pk: e for e in AuditEvent.objects.all()}
    assert len(rows) == len(stored)
    for row in rows:
        event = stored[row["id"]]
        assert (row["seq"], row["hash"], row["verb"], row["after"]) == (event.seq, event.hash, event.verb, event.after)
        assert row["created_at"] == event.created_at.isoformat()
    table = list(csv.DictReader(io.StringIO(_body(client.get("/audit/export.csv")))))
    assert len(table) == len(stored)
    finance = next(r for r in table if r["verb"] == "test.finance_thing")
    assert json.loads(finance["after"]) == {"x": "ü"}
    assert finance["hash"] == stored[int(finance["id"])].hash


def test_an_unreadable_date_filter_is_reported(client, lead, two_departments):
    client.force_login(lead)
    assert "is not a date" in client.get("/audit/", {"since": "last tuesday"}).content.decode()
    assert client.get("/audit/export.csv", {"since": "last tuesday"}).status_code == 400


def test_logins_are_recorded_and_a_failed_guess_is_not(client, lead):
    # A guess is counted by the login throttle; only a lockout reaches the
    # trail (tests/security/test_login_lockout.py).
    client.post("/login/", {"username": lead.username, "password": "wrong"})
    client.post("/login/", {"username": lead.username, "password": "correct horse battery staple"})
    verbs = list(AuditEvent.objects.order_by("id").values_list("verb", "actor_label"))
    assert ("auth.login", lead.username) in verbs
    assert not AuditEvent.objects.filter(verb__startswith="auth.").exclude(verb="auth.login").exists()
    login = AuditEvent.objects.get(verb="auth.login")
    assert login.context.get("ip") == "127.0.0.1"
