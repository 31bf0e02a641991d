from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        # Django's way: models import only once the apps are loaded, so here.
        from agents.signals import agent_resumed
        from approvals.reach import AuditDirectory
        from approvals.services import control
        from audit import access

        agent_resumed.connect(control.requeue_on_resume, dispatch_uid="approvals.requeue_on_resume")
        access.provide(AuditDirectory())
