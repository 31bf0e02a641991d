"""The embedded run's mail: one console line per email, the whole mail on
/demo/mail/ for an admin, while that backend is the one in use."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from approvals.demo import mail as demo_mail

User = get_user_model()


@pytest.fixture
def demo_backend(settings, tmp_path):
    settings.EMAIL_BACKEND = demo_mail.BACKEND
    settings.DEMO_MAIL_DIR = tmp_path / "mail"
    return tmp_path / "mail"


def send() -> None:
    mail.send_mail(
        "Decision needed in Finance",
        "Hello Fiona,\n\nA refund of 240.00 EUR waits for you.\n",
        "countersign@localhost",
        ["fiona@example.com"],
    )


def test_it_prints_one_line_per_mail_and_keeps_the_whole_mail(demo_backend, capsys):
    send()
    send()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["Mail to fiona@example.com: Decision needed in Finance (read it at /demo/mail/)"] * 2
    assert len(list(demo_backend.glob("*.eml"))) == 2


def test_an_admin_reads_the_full_mail_on_the_page(demo_backend, admin_client):
    send()
    page = admin_client.get("/demo/mail/")
    assert page.status_code == 200
    assert b"A refund of 240.00 EUR waits for you." in page.content
    assert b"fiona@example.com" in page.content


def test_a_lead_gets_a_404_and_a_stranger_the_login(demo_backend, client, db):
    send()
    assert client.get("/demo/mail/").status_code == 302
    client.force_login(User.objects.create_user("lead", password="x"))
    assert client.get("/demo/mail/").status_code == 404


def test_without_the_backend_even_an_admin_gets_a_404(admin_client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert admin_client.get("/demo/mail/").status_code == 404


def test_it_keeps_only_the_newest_mails(demo_backend, monkeypatch, capsys):
    monkeypatch.setattr(demo_mail, "KEPT", 3)
    for _ in range(5):
        send()
    assert len(list(demo_backend.glob("*.eml"))) == 3
