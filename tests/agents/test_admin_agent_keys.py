"""Agent keys in the admin: issued through agents.services, shown once in full,
stored as prefix and hash, revoked by an admin action, never deleted."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.utils import timezone

from agents.models import AgentKey, hash_key
from agents.services import issue_key
from audit.log import Actor
from audit.models import AuditEvent
from tests.admin.test_admin_pages import admin_url
from tests.support.factories import AgentFactory, UserFactory

RAW_KEY = re.compile(r"csk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
FULL_LENGTH = len(AgentKey.generate()[0])


def add_form(admin_client, agent, **fields):
    """The data of a freshly opened add form, as the browser would submit it."""
    form = admin_client.get(admin_url(AgentKey, "add")).context["adminform"].form
    data = {"agent": agent.pk, "label": "production", "expires_at_0": "", "expires_at_1": ""}
    return {**data, "issue_token": form.initial["issue_token"], **fields}


@pytest.fixture
def issued(admin_client, agent):
    """Add a key through the admin form; returns (response, raw key, key)."""
    response = admin_client.post(admin_url(AgentKey, "add"), add_form(admin_client, agent))
    assert response.status_code == 200, response.context["adminform"].form.errors
    raw = RAW_KEY.search(response.content.decode()).group()
    return response, raw, AgentKey.objects.get()


@pytest.fixture
def key(agent):
    key, _raw = issue_key(agent, actor=Actor.system(), label="staging")
    return key


def test_it_asks_only_for_agent_label_and_expiry(admin_client, db):
    response = admin_client.get(admin_url(AgentKey, "add"))
    assert set(response.context["adminform"].form.fields) == {"agent", "label", "expires_at", "issue_token"}


def test_it_shows_the_full_key_once_after_adding_it(issued):
    response, raw, key = issued
    assert len(raw) == FULL_LENGTH
    assert raw.startswith(key.prefix + "_")
    assert response.content.decode().count(raw) == 1
    assert "no-store" in response["Cache-Control"]


def test_it_stores_only_the_prefix_and_a_hash(issued):
    _response, raw, key = issued
    assert key.key_hash == hash_key(raw)
    stored = [str(getattr(key, field.attname)) for field in AgentKey._meta.concrete_fields]
    assert not any(raw in value for value in stored)


def test_it_keeps_the_key_out_of_the_session_the_messages_and_the_logs(admin_client, issued):
    response, raw, key = issued
    assert raw not in json.dumps(dict(admin_client.session.items()), default=str)
    assert not any(raw in str(message) for message in get_messages(response.wsgi_request))
    assert all(raw not in morsel.value for morsel in response.cookies.values())
    entry = LogEntry.objects.get(object_id=str(key.pk))
    assert raw not in entry.object_repr + entry.change_message


def test_it_records_the_issue_in_the_audit_trail(admin_user, issued):
    _response, raw, key = issued
    event = AuditEvent.objects.get(verb="agent_key.issued")
    assert (event.object_id, event.actor_label, event.agent_id) == (str(key.pk), admin_user.username, key.agent_id)
    assert event.after["prefix"] == key.prefix
    assert raw not in json.dumps([event.before, event.after, event.context])


def test_it_never_shows_the_key_again(admin_client, issued):
    _response, raw, key = issued
    for url in (
        admin_url(AgentKey, "change", key.pk),
        admin_url(AgentKey, "changelist"),
        admin_url(type(key.agent), "change", key.agent_id),
    ):
        page = admin_client.get(url).content.decode()
        assert key.prefix in page
        assert raw not in page
        assert not RAW_KEY.search(page)


def test_it_lets_an_admin_change_only_the_label_and_the_expiry(admin_client, key):
    other_agent = AgentFactory()
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    response = admin_client.post(
        admin_url(AgentKey, "change", key.pk),
        {
            "agent": other_agent.pk,
            "prefix": "csk_00000000",
            "label": "production",
            "expires_at_0": expires.date().isoformat(),
            "expires_at_1": expires.time().isoformat(),
        },
    )
    assert response.status_code == 302
    changed = AgentKey.objects.get(pk=key.pk)
    assert (changed.agent_id, changed.prefix, changed.key_hash) == (key.agent_id, key.prefix, key.key_hash)
    assert (changed.label, changed.expires_at) == ("production", expires)
    event = AuditEvent.objects.get(verb="agent_key.changed")
    assert event.before == {"label": "staging", "expires_at": None}
    assert event.after["label"] == "production"


def test_it_refuses_an_expiry_in_the_past(admin_client, agent):
    yesterday = timezone.now() - timedelta(days=1)
    response = admin_client.post(
        admin_url(AgentKey, "add"),
        add_form(admin_client, agent, expires_at_0=yesterday.date().isoformat(), expires_at_1="12:00:00"),
    )
    assert response.status_code == 200
    assert "expires_at" in response.context["adminform"].form.errors
    assert not AgentKey.objects.exists()
    assert not RAW_KEY.search(response.content.decode())


def test_it_revokes_selected_keys_with_an_audit_event(admin_client, admin_user, key):
    response = admin_client.post(
        admin_url(AgentKey, "changelist"), {"action": "revoke_selected_keys", "_selected_action": [key.pk]}
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert not key.is_usable
    event = AuditEvent.objects.get(verb="agent_key.revoked")
    assert (event.object_id, event.actor_label) == (str(key.pk), admin_user.username)


def test_it_leaves_an_already_revoked_key_as_it_was(admin_client, key):
    key.revoked_at = revoked_at = timezone.now() - timedelta(days=3)
    key.save()
    admin_client.post(
        admin_url(AgentKey, "changelist"), {"action": "revoke_selected_keys", "_selected_action": [key.pk]}
    )
    key.refresh_from_db()
    assert key.revoked_at == revoked_at
    assert not AuditEvent.objects.filter(verb="agent_key.revoked").exists()


def test_it_offers_revocation_instead_of_deletion(admin_client, key):
    assert admin_client.get(admin_url(AgentKey, "delete", key.pk)).status_code == 403
    actions = admin_client.get(admin_url(AgentKey, "changelist")).context["action_form"].fields["action"].choices
    assert [name for name, _label in actions if name] == ["revoke_selected_keys"]


def test_it_offers_revocation_only_to_admins_who_may_change_keys(client, key):
    viewer = UserFactory(username="vera-viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_agentkey"))
    client.force_login(viewer)
    response = client.get(admin_url(AgentKey, "changelist"))
    assert response.status_code == 200
    assert response.context["action_form"] is None or "revoke_selected_keys" not in dict(
        response.context["action_form"].fields["action"].choices
    )
    client.post(admin_url(AgentKey, "changelist"), {"action": "revoke_selected_keys", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is None


def test_it_issues_no_second_key_when_the_add_form_is_submitted_again(admin_client, agent):
    data = add_form(admin_client, agent)
    first = admin_client.post(admin_url(AgentKey, "add"), data)
    assert first.status_code == 200 and RAW_KEY.search(first.content.decode())
    again = admin_client.post(admin_url(AgentKey, "add"), data)  # what a reload of the key page sends
    assert again.status_code == 302
    assert AgentKey.objects.count() == 1
    assert AuditEvent.objects.filter(verb="agent_key.issued").count() == 1
    shown = admin_client.get(again["Location"]).content.decode()
    assert "already issued its key" in shown
    assert not RAW_KEY.search(shown)


def test_it_issues_no_key_from_a_post_without_a_form_of_its_own(admin_client, agent):
    data = {"agent": agent.pk, "label": "x", "expires_at_0": "", "expires_at_1": ""}
    assert admin_client.post(admin_url(AgentKey, "add"), data).status_code == 302
    assert not AgentKey.objects.exists()


def test_an_invalid_submit_keeps_its_form_usable(admin_client, agent):
    data = add_form(admin_client, agent, expires_at_0="2000-01-01", expires_at_1="00:00:00")
    assert admin_client.post(admin_url(AgentKey, "add"), data).status_code == 200
    fixed = {**data, "expires_at_0": "", "expires_at_1": ""}
    assert admin_client.post(admin_url(AgentKey, "add"), fixed).status_code == 200
    assert AgentKey.objects.count() == 1


def test_a_new_key_expires_by_default_and_the_form_says_when(admin_client, agent, settings):
    settings.AGENT_KEY_EXPIRY_DAYS = 30
    form = admin_client.get(admin_url(AgentKey, "add")).context["adminform"].form
    proposed = form.initial["expires_at"]
    assert timedelta(days=29, hours=23) < proposed - timezone.now() <= timedelta(days=30)
    page = admin_client.get(admin_url(AgentKey, "add")).content.decode()
    assert 'name="expires_at_0"' in page and f'value="{proposed:%Y-%m-%d}"' in page


def test_the_agent_page_lists_its_live_keys_with_their_last_use(admin_client, agent):
    live, _ = issue_key(agent, actor=Actor.system(), label="live-one")
    AgentKey.objects.filter(pk=live.pk).update(last_used_at=timezone.now() - timedelta(hours=3))
    revoked, _ = issue_key(agent, actor=Actor.system(), label="gone-one")
    AgentKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    page = admin_client.get(admin_url(type(agent), "change", agent.pk)).content.decode()
    assert "live-one" in page and "gone-one" not in page
    assert "Last used at" in page or "last used at" in page.lower()
    assert f"agent__id__exact={agent.pk}&amp;state=usable" in page
