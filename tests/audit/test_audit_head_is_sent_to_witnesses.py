"""Every hour the chain's head goes to the configured witnesses: a file, a
mailbox, a webhook; what they keep, verify_audit can check."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.management import call_command

from audit import tasks
from audit.witness import WitnessFailed, read_anchors, send_head
from tests.support.auditing import sealed_events, tamper, verify_audit
from tests.support.dispatching import SECRET
from tests.support.receivers import Answer

pytestmark = pytest.mark.django_db


def test_it_is_scheduled_every_hour():
    entry = next(e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == tasks.send_audit_anchor.name)
    assert entry["schedule"].total_seconds() == 3600


def test_the_file_witness_gets_a_line_that_verify_audit_reads(department, settings, tmp_path, capsys):
    path = tmp_path / "witness" / "anchors.log"
    settings.AUDIT_WITNESS = [f"file:{path}"]
    first = sealed_events(3, department)
    assert tasks.send_audit_anchor() == first[-1].seq
    later = sealed_events(2, department)
    tasks.send_audit_anchor()
    anchors = read_anchors(path)
    assert [(a.seq, a.hash) for a in anchors] == [(first[-1].seq, first[-1].hash), (later[-1].seq, later[-1].hash)]
    call_command("verify_audit", "--anchors", str(path))
    assert "2 anchors checked" in capsys.readouterr().out
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [later[-1].pk])
    assert f"the chain ends at seq {later[0].seq}" in verify_audit("--anchors", str(path))


def test_the_mail_witness_gets_the_line(department, settings):
    settings.AUDIT_WITNESS = ["mailto:notary@example.com"]
    events = sealed_events(2, department)
    send_head()
    (message,) = mail.outbox
    assert message.to == ["notary@example.com"]
    assert f" {events[-1].seq} {events[-1].hash}\n" in message.body


def test_the_webhook_witness_gets_a_signed_post(department, settings, receiver):
    settings.AUDIT_WITNESS = [f"{receiver.url}/anchors"]
    settings.AUDIT_WITNESS_SECRET = SECRET
    events = sealed_events(2, department)
    send_head()
    (request,) = receiver.requests
    assert request.signature_valid
    assert (request.json()["seq"], request.json()["hash"]) == (events[-1].seq, events[-1].hash)


def test_one_failing_witness_does_not_keep_the_head_from_the_others(department, settings, receiver, tmp_path):
    path = tmp_path / "anchors.log"
    settings.AUDIT_WITNESS = [f"{receiver.url}/anchors", f"file:{path}"]
    receiver.answer(Answer(503))
    events = sealed_events(1, department)
    with pytest.raises(WitnessFailed, match="HTTP 503"):
        send_head()
    assert [a.seq for a in read_anchors(path)] == [events[0].seq]


def test_nothing_is_sent_before_the_first_event(settings, tmp_path):
    path = tmp_path / "anchors.log"
    settings.AUDIT_WITNESS = [f"file:{path}"]
    assert send_head() is None
    assert not path.exists()
