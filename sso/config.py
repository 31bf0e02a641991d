"""Where single sign-on's settings come from: the environment (config/settings.py),
and for the provider's endpoints left unset, its discovery document, read
once per process on first use (OIDC_OP_DISCOVERY)."""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from mozilla_django_oidc.utils import import_from_settings

# The setting each endpoint fills, and its field in the discovery document.
DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    "OIDC_OP_ISSUER": "issuer",
}

_documents: dict[str, dict[str, Any]] = {}


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))


def provider_name() -> str:
    return getattr(settings, "OIDC_PROVIDER_NAME", "") or "single sign-on"


def discovery_url() -> str:
    url = getattr(settings, "OIDC_OP_DISCOVERY", "")
    if url and "/.well-known/" not in url:
        url = url.rstrip("/") + "/.well-known/openid-configuration"
    return url


def discovery() -> dict[str, Any]:
    url = discovery_url()
    if not url:
        return {}
    if url not in _documents:
        response = requests.get(url, timeout=getattr(settings, "OIDC_TIMEOUT", 10))
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ImproperlyConfigured(f"OIDC_OP_DISCOVERY: {url} did not answer a JSON object.")
        _documents[url] = document
    return _documents[url]


def setting(name: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, with the endpoints from discovery
    when the environment names none."""
    if name in DISCOVERED and not getattr(settings, name, ""):
        value = discovery().get(DISCOVERED[name], "")
        if value:
            return value
        if default:
            return default[0]
        raise ImproperlyConfigured(f"{name} is unset and the provider's discovery document has no {DISCOVERED[name]}.")
    return import_from_settings(name, *default)
