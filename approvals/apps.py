from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        from agents.signals import agent_resumed
        from approvals.services import control

        agent_resumed.connect(control.requeue_on_resume, dispatch_uid="approvals.requeue_on_resume")
