"""A real OpenID Provider on loopback for the single sign-on tests, built on
authlib's server side (the authorization code grant, its OpenID Connect and
PKCE extensions) and served by wsgiref from a thread: discovery, an
authorization endpoint that consents at once for the user the test names,
a token endpoint issuing RS256-signed ID tokens, the JWKS and userinfo.

Nothing of Countersign runs here: our side reaches it only over HTTP, as it
would a company's provider. A test sets `provider.user` (its `sub`, email and
groups) before each login, and may set `provider.tamper` to "nonce",
"signature" or "audience" (the ID token), or "userinfo" (another `sub`) for
a login that should be refused."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

from tests.support.servers import free_port


@dataclass
class ProviderUser:
    sub: str
    email: str = ""
    email_verified: bool = True
    groups: list[str] = field(default_factory=list)
    preferred_username: str = ""

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": self.sub, "groups": list(self.groups)}
        if self.email:
            claims |= {"email": self.email, "email_verified": self.email_verified}
        if self.preferred_username:
            claims["preferred_username"] = self.preferred_username
        return claims


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in {"openid", "email", "profile"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_post"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    user: ProviderUser
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class WSGIRequest(OAuth2Request):
    def __init__(self, environ: dict[str, Any], url: str) -> None:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = dict(parse_qsl(environ["wsgi.input"].read(length).decode())) if length else {}
        headers = {
            key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        super().__init__(
            environ["REQUEST_METHOD"], url + environ.get("PATH_INFO", "") + "?" + urlencode(query), headers=headers
        )
        self.payload = BasicOAuth2Payload({**query, **form})
        self._args, self._form = query, form

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class OpenIDProvider:
    """Use as a context manager: it listens on 127.0.0.1 from entering to exit."""

    def __init__(self, *, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client = Client(client_id, client_secret, redirect_uri)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "signing-key", "alg": "RS256", "use": "sig"})
        self.stranger_key = RSAKey.generate_key(2048, parameters={"kid": "signing-key", "alg": "RS256"})
        self.user: ProviderUser | None = None
        self.tamper = ""  # "nonce" or "signature": the next ID token is wrong that way
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, ProviderUser] = {}
        self.server = self._authorization_server()
        self.httpd: WSGIServer = make_server("127.0.0.1", self.port, self.app, handler_class=_Quiet)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"oidc-provider-{self.port}", daemon=True)

    def __enter__(self) -> OpenIDProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    # ---- the endpoints

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        request = WSGIRequest(environ, self.issuer)
        if path == "/.well-known/openid-configuration":
            status, body, headers = 200, self.discovery(), []
        elif path == "/jwks":
            status, body, headers = 200, {"keys": [self.key.as_dict(private=False)]}, []
        elif path == "/authorize":
            # Consent at once, for the user the test set: the login page is not what is tested.
            grant = self.server.get_consent_grant(request=request, end_user=self.user)
            status, body, headers = self.server.create_authorization_response(
                request=request, grant_user=self.user, grant=grant
            )
        elif path == "/token":
            status, body, headers = self.server.create_token_response(request)
        elif path == "/userinfo":
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            user = self.tokens.get(token)
            claims = user.claims() if user else {}
            if self.tamper == "userinfo":
                claims["sub"] = "someone-else"
            status, body, headers = (200, claims, []) if user else (401, {"error": "invalid_token"}, [])
        else:
            status, body, headers = 404, {"error": "not_found"}, []
        payload = body if isinstance(body, str) else json.dumps(body)
        headers = (
            [*headers, ("Content-Type", "application/json")]
            if not any(h[0].lower() == "content-type" for h in headers)
            else headers
        )
        start_response(f"{status} -", [(name, str(value)) for name, value in headers])
        return [payload.encode()]

    # ---- authlib's server

    def _authorization_server(self) -> AuthorizationServer:
        provider = self

        class Server(AuthorizationServer):
            def query_client(self, client_id: str) -> Client | None:
                return provider.client if client_id == provider.client.client_id else None

            def create_oauth2_request(self, request: WSGIRequest) -> WSGIRequest:
                return request  # already parsed from the WSGI environ

            def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
                provider.tokens[token["access_token"]] = request.user

            def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list]:
                return status, body, list(headers)

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]

            def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
                data = request.payload.data
                provider.codes[code] = Code(
                    code=code,
                    client_id=request.client.client_id,
                    redirect_uri=data.get("redirect_uri", ""),
                    scope=request.payload.scope,
                    nonce=data.get("nonce"),
                    user=request.user,
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> ProviderUser:
                return authorization_code.user

        class IDToken(OpenIDCode):
            def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
                return any(code.nonce == nonce for code in provider.codes.values())

            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return provider.stranger_key if provider.tamper == "signature" else provider.key

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "signing-key"}

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                audience = "another-client" if provider.tamper == "audience" else client.get_client_id()
                return {"iss": provider.issuer, "aud": [audience]}

            def get_authorization_code_claims(self, authorization_code: Code) -> dict[str, Any]:
                claims = super().get_authorization_code_claims(authorization_code)
                if provider.tamper == "nonce":
                    claims["nonce"] = "not-the-nonce-the-client-sent"
                return claims

            def generate_user_info(self, user: ProviderUser, scope: str) -> UserInfo:
                return UserInfo(user.claims())

        class PKCE(CodeChallenge):
            def get_authorization_code_challenge(self, authorization_code: Code) -> str | None:
                return authorization_code.code_challenge

            def get_authorization_code_challenge_method(self, authorization_code: Code) -> str | None:
                return authorization_code.code_challenge_method

        server = Server()
        server.register_token_generator(
            "default", BearerTokenGenerator(access_token_generator=lambda **kwargs: secrets.token_urlsafe(32))
        )
        server.register_grant(CodeGrant, [IDToken(require_nonce=True), PKCE(required=True)])
        return server
