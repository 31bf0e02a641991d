"""`manage.py issue_agent_key <slug>`: a new key, printed alone on the last
line of stdout, that works on the API at once."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from agents.models import AgentKey, hash_key
from tests.api.test_api_keys import KEY_SHAPE, assert_error

pytestmark = pytest.mark.django_db


def issue(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("issue_agent_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_prints_the_key_alone_on_the_last_line(agent):
    out, _err = issue("refund-bot")
    last = out.rstrip("\n").splitlines()[-1]
    assert KEY_SHAPE.fullmatch(last), out
    key = AgentKey.objects.get()
    assert (key.agent, key.prefix, key.key_hash) == (agent, last[:12], hash_key(last))


def test_it_keeps_the_key_out_of_stderr(agent):
    out, err = issue("refund-bot", "--label", "production")
    raw = out.splitlines()[-1]
    assert raw[:12] in err
    assert raw not in err
    assert AgentKey.objects.get().label == "production"


def test_it_prints_a_key_that_authenticates_at_once(agent):
    out, _err = issue("refund-bot")
    response = Client(headers={"Authorization": f"Bearer {out.splitlines()[-1]}"}).get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["slug"] == "refund-bot"


def test_it_issues_a_different_key_each_time(agent):
    first, second = issue("refund-bot")[0].splitlines()[-1], issue("refund-bot")[0].splitlines()[-1]
    assert first != second
    assert AgentKey.objects.filter(agent=agent).count() == 2
    for raw in (first, second):
        response = Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/v1/me/")
        assert response.status_code == 200


def test_it_refuses_an_unknown_slug(agent):
    with pytest.raises(CommandError, match="no-such-bot"):
        issue("no-such-bot")
    assert not AgentKey.objects.exists()


def test_it_refuses_a_key_that_was_never_printed(agent):
    out, _err = issue("refund-bot")
    raw = out.splitlines()[-1]
    forged = raw[:13] + ("A" if raw[13] != "A" else "B") + raw[14:]
    response = Client(headers={"Authorization": f"Bearer {forged}"}).get("/api/v1/me/")
    assert_error(response, 401, "unauthorized")


def test_it_gives_the_key_the_default_expiry_and_says_so(agent, settings):
    settings.AGENT_KEY_EXPIRY_DAYS = 7
    _out, err = issue(agent.slug)
    key = AgentKey.objects.get()
    assert timedelta(days=6, hours=23) < key.expires_at - timezone.now() <= timedelta(days=7)
    assert "expires on" in err


def test_it_issues_a_key_without_expiry_only_when_asked(agent):
    issue(agent.slug, "--expires-in-days", "0")
    assert AgentKey.objects.get().expires_at is None
