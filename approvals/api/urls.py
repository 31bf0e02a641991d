from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from approvals.api import views

urlpatterns = [
    path("v1/actions/", views.ActionListView.as_view(), name="api-actions"),
    path("v1/actions/<uuid:pk>/", views.action_detail, name="api-action"),
    path("v1/actions/<uuid:pk>/cancel/", views.ActionCancelView.as_view(), name="api-action-cancel"),
    path("v1/actions/<uuid:pk>/result/", views.ActionResultView.as_view(), name="api-action-result"),
    path("v1/action-types/", views.ActionTypeRegisterView.as_view(), name="api-action-types"),
    path("v1/me/", views.MeView.as_view(), name="api-me"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script from a URL: no inline script (Content-Security-Policy).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
