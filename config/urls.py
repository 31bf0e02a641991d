from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from approvals.demo import mail as demo_mail
from approvals.monitoring import health, prometheus
from sso import views as sso_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="queue", permanent=False)),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True), name="favicon"),
    path("login/", sso_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/", include("sso.urls")),  # single sign-on (docs/sso.md): 404 unless configured
    path("admin/login/", sso_views.admin_login),  # the admin's login, or the login page when passwords are off
    path("admin/", admin.site.urls),
    # Monitoring (docs/monitoring.md): health for load balancers, metrics for Prometheus.
    path("healthz", health.healthz, name="healthz"),
    path("metrics", prometheus.metrics_view, name="metrics"),
    path("api/", include("approvals.api.urls")),
    path("", include("approvals.pages.urls")),
    path("", include("audit.urls")),
    # The demo's stand-in for the systems webhook actions touch; answers 404 unless DEMO_TARGET is on.
    path("demo-target/", include("approvals.demo.target")),
    path("demo/mail/", demo_mail.mailbox, name="demo-mail"),
]

# Under /api/ even Django's own 404 and 500 answer in the API's error shape.
handler404 = "approvals.api.errors.page_not_found"
handler500 = "approvals.api.errors.server_error"
