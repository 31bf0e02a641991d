from __future__ import annotations

from django.urls import path

from approvals.pages import agents as agent_pages

urlpatterns = [
    path("agents/", agent_pages.agent_list, name="agent-list"),
    path("agents/<slug:slug>/", agent_pages.agent_detail, name="agent-detail"),
    path("agents/<slug:slug>/suspend/", agent_pages.suspend, name="agent-suspend"),
    path("agents/<slug:slug>/resume/", agent_pages.resume, name="agent-resume"),
    path("agents/<slug:slug>/evaluate/", agent_pages.evaluate, name="agent-evaluate"),
    path("agents/<slug:slug>/grants/<int:grant_id>/promote/", agent_pages.promote, name="agent-grant-promote"),
]
