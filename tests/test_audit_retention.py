from __future__ import annotations

import gzip
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from audit import chain
from audit.export import parse_jsonl
from audit.log import Actor, record
from audit.models import AuditCheckpoint, AuditEvent
from audit.retention import purge_expired

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged_chain(department, settings, tmp_path):
    """Ten events; returns them and a moment 365 days after the sixth, when
    the first six are past the default retention and the rest are not."""
    settings.AUDIT_ARCHIVE_DIR = tmp_path
    old = [record("test.event", department, actor=Actor.system(), after={"i": i}) for i in range(6)]
    between = timezone.now()
    time.sleep(0.01)
    new = [record("test.event", department, actor=Actor.system(), after={"i": i}) for i in range(6, 10)]
    chain.seal_all()
    return old + new, between + timedelta(days=365)


def test_it_archives_then_purges_and_the_chain_still_verifies(aged_chain):
    aged_chain, later = aged_chain
    result = purge_expired(now=later)
    assert result is not None and result.purged == 6
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in aged_chain[:6]]).exists()
    checkpoint = AuditCheckpoint.objects.get()
    assert checkpoint.seq == AuditEvent.objects.filter(pk=aged_chain[6].pk).get().seq - 1
    with gzip.open(result.archive, "rt") as archive:
        archived = list(parse_jsonl(archive))
    assert [row["id"] for row in archived] == [e.pk for e in aged_chain[:6]]
    assert archived[-1]["hash"] == checkpoint.hash
    verification = chain.verify()
    assert verification.ok, verification.problem
    assert AuditEvent.objects.filter(verb="audit.purged").exists()


def test_it_never_keeps_less_than_ninety_days(aged_chain, settings):
    settings.AUDIT_RETENTION_DAYS = 10
    assert purge_expired(now=timezone.now() + timedelta(days=80)) is None
    assert purge_expired(now=timezone.now() + timedelta(days=91)) is not None


def test_a_second_purge_with_nothing_old_does_nothing(aged_chain):
    _, later = aged_chain
    assert purge_expired(now=later) is not None
    assert purge_expired(now=later) is None
