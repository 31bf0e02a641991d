from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in

        from audit import auth_events

        user_logged_in.connect(auth_events.on_login, dispatch_uid="audit-login")
        user_locked_out.connect(auth_events.on_locked_out, dispatch_uid="audit-locked-out")
