"""The brake on password guessing (django-axes, approvals.login_guard): a
user name and address locked out after the limit, on the login page and the
admin's, right password or not; the audit trail holds the lockout, once,
and none of the guesses."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client

from audit.models import AuditEvent
from tests.support.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LIMIT = 3


@pytest.fixture(autouse=True)
def three_tries(settings) -> None:
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def log_in(client: Client, username: str, password: str, path: str = "/login/", address: str = "127.0.0.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_it_locks_out_a_user_name_and_address_after_the_limit_even_with_the_right_password(client, lead):
    for _ in range(LIMIT - 1):
        assert log_in(client, lead.username, "wrong").status_code == 200  # the form again, with its error
    locked = log_in(client, lead.username, "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()

    right = log_in(client, lead.username, PASSWORD)

    assert right.status_code == 429
    assert not logged_in(client)


def test_the_trail_holds_one_lockout_and_no_guess(client, lead):
    for _ in range(LIMIT + 2):  # two more tries while locked out
        log_in(client, lead.username, "hunter2")
    log_in(client, lead.username, PASSWORD)

    events = list(AuditEvent.objects.filter(verb__startswith="auth."))
    assert [event.verb for event in events] == ["auth.locked_out"]
    lockout = events[0]
    assert lockout.actor_label == lead.username
    assert lockout.after == {"username": lead.username, "ip_address": "127.0.0.1", "failures": LIMIT}
    assert "hunter2" not in json.dumps(lockout.after) + json.dumps(lockout.context)
    # Nor does the brake keep it: it stores the form with the password masked.
    assert "hunter2" not in "".join(AccessAttempt.objects.values_list("post_data", flat=True))


def test_the_admin_login_is_throttled_alike(client):
    admin = UserFactory(username="ada-admin", is_staff=True, is_superuser=True)
    for _ in range(LIMIT):
        log_in(client, admin.username, "wrong", path="/admin/login/")

    answer = log_in(client, admin.username, PASSWORD, path="/admin/login/")

    assert answer.status_code == 429
    assert not logged_in(client)
    assert AuditEvent.objects.filter(verb="auth.locked_out", actor_label=admin.username).count() == 1


def test_the_same_name_from_another_address_still_logs_in(client, lead):
    for _ in range(LIMIT):
        log_in(client, lead.username, "wrong", address="203.0.113.9")

    assert log_in(client, lead.username, PASSWORD, address="198.51.100.7").status_code == 302
    assert logged_in(client)


def test_a_success_before_the_limit_starts_the_count_again(client, lead):
    for _ in range(LIMIT - 1):
        log_in(client, lead.username, "wrong")
    assert log_in(client, lead.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(LIMIT - 1):
        log_in(client, lead.username, "wrong")

    assert log_in(client, lead.username, PASSWORD).status_code == 302
    assert not AuditEvent.objects.filter(verb="auth.locked_out").exists()


def test_the_lock_lifts_after_the_cool_off(client, lead, settings):
    for _ in range(LIMIT):
        log_in(client, lead.username, "wrong")
    # The attempts as they were stored a cool-off ago, instead of waiting for it.
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
        attempt.save()

    assert log_in(client, lead.username, PASSWORD).status_code == 302
    assert logged_in(client)
