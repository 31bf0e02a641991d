from django.urls import path, re_path

from audit import views

urlpatterns = [
    path("audit/", views.audit_list, name="audit"),
    re_path(r"^audit/export\.(?P<fmt>csv|jsonl)$", views.audit_export, name="audit-export"),
]
