"""The OpenID Connect backend: mozilla-django-oidc's code flow (state, nonce,
the ID token's signature against the provider's JWKS, its expiry), plus the
checks it leaves to us (the audience and issuer, the userinfo's subject),
then sso.accounts for the user and their roles. Listed in
AUTHENTICATION_BACKENDS always; without OIDC_RP_CLIENT_ID it authenticates
nobody and reads no setting."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from audit.people import Person
from sso import accounts, config


class OIDCBackend(OIDCAuthenticationBackend):
    get_settings = staticmethod(config.setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if config.enabled():
            super().__init__(*args, **kwargs)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Person | None:
        if not config.enabled() or request is None or "nonce" not in kwargs:
            return None  # a password login, or single sign-on is off
        return super().authenticate(request, **kwargs)

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        if self.OIDC_RP_CLIENT_ID not in (audience if isinstance(audience, list) else [audience]):
            raise SuspiciousOperation("The ID token was issued to another client (aud).")
        issuer = config.setting("OIDC_OP_ISSUER", "")
        if issuer and payload.get("iss") != issuer:
            raise SuspiciousOperation("The ID token comes from another issuer (iss).")
        if not payload.get("sub"):
            raise SuspiciousOperation("The ID token names no subject (sub).")
        return payload

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Person:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload["sub"]:
            raise SuspiciousOperation("The userinfo answer is about another subject than the ID token.")
        # The ID token's issuer and subject, the userinfo's claims (groups, email).
        claims = {**payload, **userinfo, "iss": payload.get("iss", ""), "sub": payload["sub"]}
        return accounts.sign_in(claims)
