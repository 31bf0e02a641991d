"""Single sign-on against a real OpenID Provider on loopback
(tests/support/oidc_provider.py: authlib's server, RS256 ID tokens, JWKS, PKCE).

The login is driven as a browser drives it: our /oidc/authenticate/ sends to
the provider, the provider (over real HTTP) sends back to /oidc/callback/
with a code, and our backend fetches the token, the keys and the userinfo
from the provider over HTTP. Then: the user holds the roles the mappings
give, sees their department's queue, loses a role when the provider drops
the group, and a wrong state, nonce or signature logs nobody in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from approvals.models import Department
from audit.models import AuditEvent
from sso.models import OIDCIdentity, Role, RoleMapping
from tests.support.factories import PASSWORD, DepartmentFactory, UserFactory
from tests.support.oidc_provider import OpenIDProvider, ProviderUser

pytestmark = pytest.mark.django_db

CALLBACK = "http://testserver/oidc/callback/"


@pytest.fixture
def provider(settings) -> Iterator[OpenIDProvider]:
    with OpenIDProvider(client_id="countersign", client_secret="s3cret-of-the-client", redirect_uri=CALLBACK) as op:
        settings.OIDC_RP_CLIENT_ID = "countersign"
        settings.OIDC_RP_CLIENT_SECRET = "s3cret-of-the-client"
        settings.OIDC_OP_DISCOVERY = op.issuer  # every endpoint from its discovery document
        settings.OIDC_PROVIDER_NAME = "Acme ID"
        yield op


@pytest.fixture
def mappings(department: Department) -> Department:
    RoleMapping.objects.create(claim="groups", value="finance-leads", role=Role.LEAD, department=department)
    RoleMapping.objects.create(claim="groups", value="finance-backups", role=Role.BACKUP, department=department)
    RoleMapping.objects.create(claim="groups", value="countersign-admins", role=Role.ADMIN)
    return department


def start(client: Client, provider: OpenIDProvider, user: ProviderUser) -> str:
    """Our door to the provider, and the provider's answer: the callback URL with code and state."""
    provider.user = user
    to_provider = client.get("/oidc/authenticate/")
    assert to_provider.status_code == 302
    assert to_provider["Location"].startswith(f"{provider.issuer}/authorize?")
    back = httpx.get(to_provider["Location"], follow_redirects=False)
    assert back.status_code == 302, back.text
    assert back.headers["Location"].startswith(CALLBACK + "?")
    return back.headers["Location"].removeprefix("http://testserver")


def log_in(client: Client, provider: OpenIDProvider, user: ProviderUser) -> None:
    answer = client.get(start(client, provider, user))
    assert answer.status_code == 302 and answer["Location"] == "/queue/", answer.get("Location")


def refused(client: Client, callback: str) -> None:
    answer = client.get(callback)
    assert answer.status_code == 302 and answer["Location"] == "/login/?sso=failed"
    assert "_auth_user_id" not in client.session
    assert "Single sign-on did not log you in" in client.get(answer["Location"]).content.decode()


def is_admin(user) -> bool:
    return get_user_model().objects.get(pk=user.pk).has_perm("audit.view_auditevent")


def verbs(*names: str) -> list[str]:
    return list(AuditEvent.objects.filter(verb__in=names).order_by("pk").values_list("verb", flat=True))


def test_the_login_page_offers_the_provider(provider):
    page = Client().get("/login/").content.decode()
    assert "Sign in with Acme ID" in page and 'href="/oidc/authenticate/"' in page
    assert 'name="password"' in page  # passwords stay unless PASSWORD_LOGIN=0


@pytest.mark.embedded  # on SQLite too
def test_first_login_creates_the_user_with_the_mapped_roles_and_shows_their_queue(provider, mappings, propose):
    action = propose()
    client = Client()
    log_in(client, provider, ProviderUser("ext-001", "fiona@acme.test", groups=["finance-leads", "countersign-admins"]))

    user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    assert user.username == "fiona@acme.test" and not user.has_usable_password()
    assert OIDCIdentity.objects.get(user=user).subject == "ext-001"
    assert mappings.leads.filter(pk=user.pk).exists() and not mappings.backup_approvers.filter(pk=user.pk).exists()
    assert is_admin(user)
    assert f'id="action-{action.pk}"' in client.get("/queue/").content.decode()
    assert verbs("sso.account_created", "sso.role_granted", "auth.login") == [
        "sso.account_created",
        "sso.role_granted",
        "sso.role_granted",
        "auth.login",
    ]
    granted = AuditEvent.objects.filter(verb="sso.role_granted", department_id=mappings.pk).get()
    assert granted.after == {"user": user.username, "user_id": user.pk, "role": "lead", "department": "finance"}


def test_a_group_taken_away_at_the_provider_revokes_the_role_at_the_next_login(provider, mappings, propose):
    action = propose()
    fiona = ProviderUser("ext-001", "fiona@acme.test", groups=["finance-leads", "countersign-admins"])
    log_in(Client(), provider, fiona)
    user = get_user_model().objects.get(username="fiona@acme.test")
    # A role no mapping names is the admin's, and stays.
    elsewhere = DepartmentFactory(name="Legal", slug="legal", backup_approvers=[user])

    fiona.groups = ["finance-backups"]
    client = Client()
    log_in(client, provider, fiona)
    assert not mappings.leads.filter(pk=user.pk).exists()
    assert mappings.backup_approvers.filter(pk=user.pk).exists()
    assert not is_admin(user)
    assert elsewhere.backup_approvers.filter(pk=user.pk).exists()
    assert f'id="action-{action.pk}"' not in client.get("/queue/").content.decode()  # a backup, not escalated
    revoked = AuditEvent.objects.filter(verb="sso.role_revoked").order_by("pk")
    assert [event.after["role"] for event in revoked] == ["admin", "lead"]
    assert get_user_model().objects.filter(email="fiona@acme.test").count() == 1  # found again by sub


def test_an_unverified_email_never_links_to_an_existing_account(provider, mappings):
    lena = UserFactory(username="lena", email="lena@acme.test")
    client = Client()
    log_in(client, provider, ProviderUser("ext-777", "lena@acme.test", email_verified=False, groups=["finance-leads"]))
    user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    assert user.pk != lena.pk and user.email == "" and user.username.startswith("sso-")
    assert not OIDCIdentity.objects.filter(user=lena).exists()
    assert not mappings.leads.filter(pk=lena.pk).exists()


def test_a_verified_email_links_to_the_existing_account(provider, mappings):
    lena = UserFactory(username="lena", email="Lena@Acme.test")
    client = Client()
    log_in(client, provider, ProviderUser("ext-778", "lena@acme.test", groups=["finance-leads"]))
    assert int(client.session["_auth_user_id"]) == lena.pk
    assert OIDCIdentity.objects.get(user=lena).subject == "ext-778"
    assert mappings.leads.filter(pk=lena.pk).exists()
    assert verbs("sso.account_linked") == ["sso.account_linked"]


def test_a_callback_with_a_state_this_session_never_sent_is_refused(provider, mappings):
    client = Client()
    callback = start(client, provider, ProviderUser("ext-001", "fiona@acme.test", groups=["finance-leads"]))
    code = callback.split("code=")[1].split("&")[0]
    refused(client, f"/oidc/callback/?code={code}&state=forged-state")
    # Another browser replaying the real callback has no state either.
    refused(Client(), callback)
    assert not get_user_model().objects.filter(email="fiona@acme.test").exists()


@pytest.mark.parametrize("tamper", ["nonce", "signature", "audience", "userinfo"])
def test_a_wrong_nonce_signature_audience_or_userinfo_subject_is_refused(provider, mappings, tamper):
    provider.tamper = tamper
    client = Client()
    refused(client, start(client, provider, ProviderUser("ext-001", "fiona@acme.test", groups=["finance-leads"])))
    assert not get_user_model().objects.filter(email="fiona@acme.test").exists()
    assert not mappings.leads.exclude(username__in=["lena-lead", "omar-lead"]).exists()


def test_with_passwords_off_only_single_sign_on_logs_in(provider, mappings, settings, lead):
    settings.PASSWORD_LOGIN = False
    client = Client()
    page = client.get("/login/").content.decode()
    assert "Sign in with Acme ID" in page and 'name="password"' not in page
    answer = client.post("/login/", {"username": lead.username, "password": PASSWORD})
    assert answer.status_code == 403 and "Password login is switched off" in answer.content.decode()
    assert "_auth_user_id" not in client.session
    # The admin's login goes to the same page.
    admin_login = client.get("/admin/login/?next=/admin/")
    assert admin_login.status_code == 302 and admin_login["Location"] == "/login/?next=%2Fadmin%2F"
    assert client.post("/admin/login/", {"username": lead.username, "password": PASSWORD}).status_code == 302
    assert "_auth_user_id" not in client.session
    log_in(client, provider, ProviderUser("ext-001", "fiona@acme.test", groups=["finance-leads"]))


@pytest.mark.embedded
def test_without_configuration_nothing_changes(lead, settings):
    assert not settings.OIDC_RP_CLIENT_ID
    client = Client()
    page = client.get("/login/").content.decode()
    assert "Sign in with" not in page and 'name="password"' in page
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    answer = client.post("/login/", {"username": lead.username, "password": PASSWORD})
    assert answer.status_code == 302 and int(client.session["_auth_user_id"]) == lead.pk
    assert Permission.objects.filter(codename="view_auditevent").exists()
