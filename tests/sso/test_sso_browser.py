"""A lead signs in with single sign-on in Chromium: the login page's button,
the real OpenID Provider on loopback (tests/support/oidc_provider.py), back through
/oidc/callback/ to the queue of the department the provider's group maps to,
served by the real ASGI app; no Content-Security-Policy violation on the way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from approvals.models import Action, Department
from sso.models import Role, RoleMapping
from tests.support.oidc_provider import OpenIDProvider, ProviderUser
from tests.support.servers import ASGIServerThread

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def waiting_action(propose) -> Action:
    return propose(amount=Decimal("310.00"), reasoning="Refund the damaged parcel.")


@pytest.fixture
def provider(asgi_server: ASGIServerThread, settings, department: Department) -> Iterator[OpenIDProvider]:
    redirect_uri = f"{asgi_server.url}/oidc/callback/"
    with OpenIDProvider(client_id="countersign", client_secret="browser-test-secret", redirect_uri=redirect_uri) as op:
        settings.OIDC_RP_CLIENT_ID = "countersign"
        settings.OIDC_RP_CLIENT_SECRET = "browser-test-secret"
        settings.OIDC_OP_DISCOVERY = op.issuer
        settings.OIDC_PROVIDER_NAME = "Acme ID"
        settings.PASSWORD_LOGIN = False
        RoleMapping.objects.create(claim="groups", value="finance-leads", role=Role.LEAD, department=department)
        yield op


def test_a_lead_signs_in_through_the_provider_and_lands_on_their_queue(waiting_action, provider, browser_page: Page):
    provider.user = ProviderUser("ext-042", "fiona@acme.test", groups=["finance-leads"])
    page = browser_page
    violations: list[str] = []
    page.on("console", lambda message: _collect_csp(message, violations))

    page.goto("/queue/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/queue/$"))
    expect(page.get_by_label("Password")).to_have_count(0)  # PASSWORD_LOGIN=0
    page.get_by_role("link", name="Sign in with Acme ID").click()

    expect(page).to_have_url(re.compile(r"/queue/$"))
    expect(page.locator(f"#action-{waiting_action.pk}")).to_be_visible()
    assert violations == []


def _collect_csp(message: ConsoleMessage, violations: list[str]) -> None:
    if "Content Security Policy" in message.text:
        violations.append(message.text)
