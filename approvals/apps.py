from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        # Django's way: models import only once the apps are loaded, so here.
        from agents import fresh
        from agents.signals import agent_resumed
        from approvals.models import ActionType, Department
        from approvals.reach import AuditDirectory
        from approvals.services import control
        from audit import access

        agent_resumed.connect(control.requeue_on_resume, dispatch_uid="approvals.requeue_on_resume")
        access.provide(AuditDirectory())
        # The API caches action types (with their routing department) and agents' departments.
        fresh.announce_changes_of(ActionType, Department)
