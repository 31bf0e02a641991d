from __future__ import annotations

from django.urls import path

from approvals import views

urlpatterns = [
    path("queue/", views.queue_page, name="queue"),
    path("queue/bulk-approve/", views.bulk_approve, name="queue-bulk-approve"),
    path("actions/<uuid:action_id>/", views.action_detail, name="action-detail"),
    path("actions/<uuid:action_id>/approve/", views.approve, name="action-approve"),
    path("actions/<uuid:action_id>/reject/", views.reject, name="action-reject"),
    path("actions/<uuid:action_id>/veto/", views.veto, name="action-veto"),
    path("actions/<uuid:action_id>/shadow-mark/", views.shadow_mark, name="action-shadow-mark"),
    path("actions/<uuid:action_id>/rollback/", views.rollback, name="action-rollback"),
    path("gateway/pause/", views.gateway_pause, name="gateway-pause"),
    path("gateway/resume/", views.gateway_resume, name="gateway-resume"),
    path("settings/", views.lead_settings, name="lead-settings"),
]
