from __future__ import annotations

import gzip

import pytest

from audit import chain
from audit.checkpoints import file_sha256
from audit.export import parse_jsonl
from audit.models import AuditCheckpoint, AuditEvent
from audit.retention import RetentionRefused, purge_expired
from audit.verification import verify
from tests.support.auditing import aged_events, sealed_events, tamper

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged_chain(department, settings, tmp_path):
    """Six events written 400 days ago, then four today."""
    settings.AUDIT_ARCHIVE_DIR = tmp_path
    old = aged_events(6, department, days=400)
    return old + sealed_events(4, department)


def test_it_archives_then_purges_and_the_chain_still_verifies(aged_chain):
    result = purge_expired()
    assert result is not None and result.purged == 6
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in aged_chain[:6]]).exists()
    checkpoint = AuditCheckpoint.objects.get()
    assert checkpoint.seq == AuditEvent.objects.filter(pk=aged_chain[6].pk).get().seq - 1
    assert checkpoint.archive_sha256 == file_sha256(result.archive) == result.archive_sha256
    with gzip.open(result.archive, "rt") as archive:
        archived = list(parse_jsonl(archive))
    assert [row["id"] for row in archived] == [e.pk for e in aged_chain[:6]]
    assert archived[-1]["hash"] == checkpoint.hash
    chain.seal_all()
    verification = verify()
    assert verification.ok, verification.problems
    purged = AuditEvent.objects.get(verb="audit.purged")
    assert purged.after["archive_sha256"] == checkpoint.archive_sha256 and purged.after["up_to_seq"] == checkpoint.seq


def test_it_never_keeps_less_than_ninety_days(department, settings, tmp_path):
    settings.AUDIT_ARCHIVE_DIR = tmp_path
    settings.AUDIT_RETENTION_DAYS = 10
    aged_events(3, department, days=80)
    chain.seal_all()
    assert purge_expired() is None
    assert AuditEvent.objects.count() == 3


def test_a_second_purge_with_nothing_old_does_nothing(aged_chain):
    assert purge_expired() is not None
    assert purge_expired() is None


def test_it_refuses_to_purge_a_chain_that_does_not_verify(aged_chain):
    target = AuditEvent.objects.get(pk=aged_chain[2].pk)
    tamper("UPDATE audit_auditevent SET verb = 'test.innocent' WHERE id = %s", [target.pk])
    with pytest.raises(RetentionRefused, match=f"seq {target.seq} \\(id {target.pk}\\)"):
        purge_expired()
    assert AuditEvent.objects.count() == len(aged_chain)


def test_an_empty_trail_has_nothing_to_purge_and_says_so_quietly(settings, tmp_path):
    settings.AUDIT_ARCHIVE_DIR = tmp_path
    assert purge_expired() is None
