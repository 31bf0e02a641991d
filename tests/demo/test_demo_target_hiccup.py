"""The demo target's `hiccup` mode, the lead router's in the demo: the first
delivery of one action in HICCUP_EVERY fails and its retry succeeds, so a
retry shows on an action page while the failed share of attempts stays far
under the dispatch-error detector's threshold."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache

from approvals.demo import target as demo_target
from tests.demo.test_dispatch_demo_target import action_type, deliver, demo_target_on  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()


def test_one_action_in_five_fails_its_first_delivery_and_succeeds_on_the_retry(client, action_type):  # noqa: F811
    firsts, retried = [], 0
    for _ in range(4 * demo_target.HICCUP_EVERY):
        key = str(uuid.uuid4())
        status = deliver(client, action_type, "hiccup", key=key).status_code
        firsts.append(status)
        if status == 503:
            assert deliver(client, action_type, "hiccup", key=key).status_code == 201
            retried += 1
    assert retried == 4
    assert firsts.count(201) == 16
    # Attempts failed: 4 of 24, a sixth; the detector alerts at half.
    assert 100 * retried / (len(firsts) + retried) < 50
