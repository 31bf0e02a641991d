from django.urls import path

from approvals import views

urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("actions/<uuid:action_id>/", views.action_detail, name="action-detail"),
]
