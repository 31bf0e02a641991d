"""A proposal's callback_url: https on a host in CALLBACK_ALLOWED_HOSTS
(`*.example.com` for its subdomains), plain http only when DEBUG. Anything
else is a 400 naming the field, and nothing is stored; with no allowed host
at all, the gateway makes no callbacks."""

from __future__ import annotations

import pytest

from agents.models import AgentKey
from approvals.models import Action
from tests.api.test_api_keys import api_client, assert_error, post_json
from tests.support.callbacking import granted_type, new_key

pytestmark = pytest.mark.django_db


def propose(raw_key: str, callback_url: str):
    return post_json(
        api_client(raw_key=raw_key),
        "/api/v1/actions/",
        {"action_type": "parts.ship", "payload": {"note": "x"}, "reasoning": "Because.", "callback_url": callback_url},
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/cb", "https"),
        ("https://evil.example.net/cb", "CALLBACK_ALLOWED_HOSTS"),
        ("https://agents.example.com/cb", "CALLBACK_ALLOWED_HOSTS"),  # the wildcard is for subdomains
        ("https://user:secret@hooks.example.com/cb", "user name or password"),
        ("https://hooks.example.com:port/cb", "Not a valid URL"),
        ("ftp://hooks.example.com/cb", "https"),
        ("not a url", "https"),
    ],
)
def test_a_forbidden_callback_url_is_a_400_and_nothing_is_stored(agent, settings, url, why):
    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.example.com", "*.agents.example.com"]
    settings.CALLBACK_ALLOW_HTTP = False
    granted_type(agent)
    error = assert_error(propose(new_key(agent), url), 400, "invalid")
    assert why in error["fields"]["callback_url"][0]
    assert not Action.objects.exists()


def test_an_allowed_url_is_stored_with_the_key_that_will_sign_its_callbacks(agent, settings):
    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.example.com", "*.agents.example.com"]
    settings.CALLBACK_ALLOW_HTTP = False
    granted_type(agent)
    raw = new_key(agent)
    for url in ("https://hooks.example.com/cb", "https://bot-1.agents.example.com/decisions?run=7"):
        response = propose(raw, url)
        assert response.status_code == 201, response.content
        action = Action.objects.get(pk=response.json()["id"])
        assert action.callback_url == url and action.callback_key == AgentKey.objects.get()


def test_http_only_when_allowed_and_no_callbacks_at_all_without_allowed_hosts(agent, settings):
    granted_type(agent)
    raw = new_key(agent)
    settings.CALLBACK_ALLOWED_HOSTS = ["hooks.example.com"]
    settings.CALLBACK_ALLOW_HTTP = True  # DEBUG's setting
    assert propose(raw, "http://hooks.example.com/cb").status_code == 201
    settings.CALLBACK_ALLOWED_HOSTS = []
    error = assert_error(propose(raw, "https://hooks.example.com/cb"), 400, "invalid")
    assert "makes no callbacks" in error["fields"]["callback_url"][0]
