from __future__ import annotations

from django.urls import path

from approvals.pages import alerts as alert_pages
from approvals.pages import dashboard, views
from approvals.pages import decision_links as decision_link_pages
from approvals.pages import reviews as review_pages
from approvals.pages import slack as slack_pages

urlpatterns = [
    path("queue/", views.queue_page, name="queue"),
    path("queue/bulk-approve/", views.bulk_approve, name="queue-bulk-approve"),
    path("queue/preview/<uuid:action_id>/", views.queue_preview, name="queue-preview"),
    path("actions/<uuid:action_id>/", views.action_detail, name="action-detail"),
    path("actions/<uuid:action_id>/approve/", views.approve, name="action-approve"),
    path("actions/<uuid:action_id>/reject/", views.reject, name="action-reject"),
    path("actions/<uuid:action_id>/veto/", views.veto, name="action-veto"),
    path("actions/<uuid:action_id>/shadow-mark/", views.shadow_mark, name="action-shadow-mark"),
    path("actions/<uuid:action_id>/rollback/", views.rollback, name="action-rollback"),
    # One-click decisions by email (approvals/notify/decision_links.py); Slack (approvals/notify/slack.py).
    path("decide/<str:token>/", decision_link_pages.decision_link, name="decision-link"),
    path("slack/interactions/", slack_pages.interactions, name="slack-interactions"),
    path("gateway/pause/", views.gateway_pause, name="gateway-pause"),
    path("gateway/resume/", views.gateway_resume, name="gateway-resume"),
    path("settings/", views.lead_settings, name="lead-settings"),
    path("dashboard/", dashboard.dashboard_index, name="dashboard"),
    path("alerts/", alert_pages.alert_list, name="alerts"),
    path("alerts/<int:alert_id>/acknowledge/", alert_pages.acknowledge, name="alert-acknowledge"),
    path("reviews/", review_pages.reviews_due, name="reviews-due"),
    path("agents/<slug:slug>/reviews/", review_pages.agent_reviews, name="agent-reviews"),
    path("departments/<slug:slug>/", dashboard.department_dashboard, name="department-dashboard"),
]
