from django.urls import path

from approvals.pages.consumers import AlertConsumer, QueueConsumer

websocket_urlpatterns = [
    path("ws/queue/", QueueConsumer.as_asgi()),
    path("ws/alerts/", AlertConsumer.as_asgi()),
]
