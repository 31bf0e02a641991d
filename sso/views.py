"""The login doors: the login page (password and single sign-on), the
admin's login, and the OpenID Connect start and callback (docs/sso.md)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from mozilla_django_oidc import views as oidc_views

from sso import config

log = logging.getLogger(__name__)


class LoginView(auth_views.LoginView):
    """Django's login page; with PASSWORD_LOGIN=0 it shows only the single
    sign-on button and refuses a password POST."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            password_login=settings.PASSWORD_LOGIN,
            sso_enabled=config.enabled(),
            sso_name=config.provider_name(),
            sso_failed="sso" in self.request.GET,
            **kwargs,
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.PASSWORD_LOGIN:
            context = self.get_context_data(form=self.get_form_class()(request), password_refused=True)
            return self.render_to_response(context, status=403)
        return super().post(request, *args, **kwargs)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's own login, unless passwords are off: then the login page."""
    if settings.PASSWORD_LOGIN:
        return admin.site.login(request)
    query = urlencode({"next": request.GET.get("next", reverse("admin:index"))})
    return HttpResponseRedirect(f"{reverse('login')}?{query}")


class AuthenticateView(oidc_views.OIDCAuthenticationRequestView):
    """Sends the browser to the provider, with a fresh state and nonce kept in the session."""

    get_settings = staticmethod(config.setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if config.enabled():
            super().__init__(*args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not config.enabled():
            raise Http404("Single sign-on is not configured.")
        return super().get(request)


class CallbackView(oidc_views.OIDCAuthenticationCallbackView):
    """The provider's answer. An unknown state, a bad nonce, signature,
    audience or issuer, or a provider that fails, logs nobody in: back to the
    login page with a message."""

    get_settings = staticmethod(config.setting)

    @property
    def failure_url(self) -> str:
        return f"{reverse('login')}?sso=failed"

    def get(self, request: HttpRequest) -> HttpResponse:
        if not config.enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            return super().get(request)
        except (SuspiciousOperation, requests.RequestException) as error:
            log.warning("Single sign-on refused: %s", error)
            return redirect(self.failure_url)
