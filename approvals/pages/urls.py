"""The lead pages' URLs (the agent API's are approvals/api/urls.py)."""

from __future__ import annotations

from django.urls import path

from approvals.pages import actions, dashboard, decide, gateway, settings, simulator
from approvals.pages import agents as agent_pages
from approvals.pages import alerts as alert_pages
from approvals.pages import decision_links as decision_link_pages
from approvals.pages import queue as queue_pages
from approvals.pages import reviews as review_pages
from approvals.pages import slack as slack_pages

urlpatterns = [
    path("queue/", queue_pages.queue_page, name="queue"),
    path("queue/bulk-approve/", queue_pages.bulk_approve, name="queue-bulk-approve"),
    path("queue/preview/<uuid:action_id>/", queue_pages.queue_preview, name="queue-preview"),
    path("actions/<uuid:action_id>/", actions.action_detail, name="action-detail"),
    path("actions/<uuid:action_id>/approve/", decide.approve, name="action-approve"),
    path("actions/<uuid:action_id>/reject/", decide.reject, name="action-reject"),
    path("actions/<uuid:action_id>/veto/", decide.veto, name="action-veto"),
    path("actions/<uuid:action_id>/shadow-mark/", decide.shadow_mark, name="action-shadow-mark"),
    path("actions/<uuid:action_id>/rollback/", decide.rollback, name="action-rollback"),
    # One-click decisions by email (approvals/notify/decision_links.py); Slack (approvals/notify/slack.py).
    path("decide/<str:token>/", decision_link_pages.decision_link, name="decision-link"),
    path("slack/interactions/", slack_pages.interactions, name="slack-interactions"),
    path("gateway/pause/", gateway.gateway_pause, name="gateway-pause"),
    path("gateway/resume/", gateway.gateway_resume, name="gateway-resume"),
    path("settings/", settings.lead_settings, name="lead-settings"),
    path("dashboard/", dashboard.dashboard_index, name="dashboard"),
    path("simulator/", simulator.simulator, name="simulator"),
    path("alerts/", alert_pages.alert_list, name="alerts"),
    path("alerts/<int:alert_id>/acknowledge/", alert_pages.acknowledge, name="alert-acknowledge"),
    path("reviews/", review_pages.reviews_due, name="reviews-due"),
    path("agents/<slug:slug>/reviews/", review_pages.agent_reviews, name="agent-reviews"),
    path("departments/<slug:slug>/", dashboard.department_dashboard, name="department-dashboard"),
    # The agent pages (the kill switch and earned autonomy).
    path("agents/", agent_pages.agent_list, name="agent-list"),
    path("agents/<slug:slug>/", agent_pages.agent_detail, name="agent-detail"),
    path("agents/<slug:slug>/suspend/", agent_pages.suspend, name="agent-suspend"),
    path("agents/<slug:slug>/resume/", agent_pages.resume, name="agent-resume"),
    path("agents/<slug:slug>/evaluate/", agent_pages.evaluate, name="agent-evaluate"),
    path("agents/<slug:slug>/grants/<int:grant_id>/promote/", agent_pages.promote, name="agent-grant-promote"),
]
