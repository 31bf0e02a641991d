from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="queue", permanent=False)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("approvals.api.urls")),
    path("", include("approvals.urls")),
    path("", include("agents.urls")),
    path("", include("audit.urls")),
    # The demo's stand-in for the systems webhook actions touch; answers 404 unless DEMO_TARGET is on.
    path("demo-target/", include("approvals.demo_target")),
]
