"""The per-agent rate limit slides: a burst at the end of one window and
another at the start of the next count together, so no boundary lets an agent
through at twice its rate. The clock is pinned, never read."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from approvals.api.throttle import AgentRateThrottle, Window
from tests.api.test_api_keys import api_client, assert_error

ME = "/api/v1/me/"
MINUTE_START = 1_800_000_000.0  # a multiple of 60


@pytest.fixture
def clock(agent, monkeypatch: pytest.MonkeyPatch):
    """Three requests a minute, on a clock the test sets: clock.now = seconds."""

    class Clock:
        now = MINUTE_START

    monkeypatch.setattr(AgentRateThrottle, "rate", "3/min")
    monkeypatch.setattr(AgentRateThrottle, "now", staticmethod(lambda: Clock.now))
    window = int(MINUTE_START // 60)
    keys = [AgentRateThrottle.cache_key(agent.pk, window + offset) for offset in (-1, 0, 1, 2)]
    cache.delete_many(keys)
    yield Clock
    cache.delete_many(keys)


def test_a_burst_straddling_a_window_boundary_is_throttled(agent, clock):
    client = api_client(agent)
    clock.now = MINUTE_START + 59.5  # the last half second of a minute
    for _ in range(3):
        assert client.get(ME).status_code == 200
    clock.now = MINUTE_START + 60.5  # one second later, in the next minute
    response = client.get(ME)
    assert_error(response, 429, "throttled")
    # Fixed windows would have let this through: the new minute's count is 1.


def test_the_previous_window_fades_as_the_current_one_goes_on(agent, clock):
    client = api_client(agent)
    clock.now = MINUTE_START + 30
    for _ in range(3):
        assert client.get(ME).status_code == 200
    # 30 s into the next minute, half of the last one's 3 still count: 1.5 + 1 <= 3.
    clock.now = MINUTE_START + 90
    assert client.get(ME).status_code == 200
    assert_error(client.get(ME), 429, "throttled")  # 1.5 + 2 ... + this one: over
    # A full period after the burst, it has faded away.
    clock.now = MINUTE_START + 150
    assert client.get(ME).status_code == 200


def test_retry_after_says_when_a_request_would_pass(agent, clock):
    client = api_client(agent)
    clock.now = MINUTE_START + 20
    for _ in range(3):
        client.get(ME)
    refused = client.get(ME)
    assert_error(refused, 429, "throttled")
    wait = int(refused["Retry-After"])
    clock.now += wait - 1
    assert client.get(ME).status_code == 429  # not yet (and this knock counts too)
    clock.now += wait + 60  # well past it, even with the knocks counted
    assert client.get(ME).status_code == 200


@pytest.mark.parametrize(
    ("elapsed", "previous", "current", "allowed"),
    [
        (0, 0, 3, True),
        (0, 0, 4, False),
        (1, 3, 1, False),  # 3 x 59/60 + 1 > 3
        (30, 3, 1, True),  # 1.5 + 1
        (30, 3, 2, False),  # 1.5 + 2
        (59, 60, 2, True),  # 1 + 2
    ],
)
def test_the_estimate_weighs_the_previous_window_by_what_is_left_of_it(elapsed, previous, current, allowed):
    window = Window.at(MINUTE_START + elapsed, "3/min")
    assert (window.estimate(previous, current) <= window.limit) is allowed


def test_retry_after_is_the_first_second_the_estimate_allows_one_more():
    window = Window.at(MINUTE_START + 10, "3/min")
    wait = window.seconds_until_allowed(previous=3, current=1)
    later = Window.at(MINUTE_START + 10 + wait, "3/min")
    earlier = Window.at(MINUTE_START + 10 + wait - 1, "3/min")
    assert later.estimate(3, 1) + 1 <= 3 < earlier.estimate(3, 1) + 1


def test_the_embedded_runs_in_process_cache_slides_too(agent, clock, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    client = api_client(agent)
    clock.now = MINUTE_START + 59.5
    for _ in range(3):
        assert client.get(ME).status_code == 200
    clock.now = MINUTE_START + 60.5
    assert_error(client.get(ME), 429, "throttled")
