from __future__ import annotations

from django.urls import path

from agents import views

urlpatterns = [
    path("agents/", views.agent_list, name="agent-list"),
    path("agents/<slug:slug>/", views.agent_detail, name="agent-detail"),
    path("agents/<slug:slug>/suspend/", views.suspend, name="agent-suspend"),
    path("agents/<slug:slug>/resume/", views.resume, name="agent-resume"),
]
