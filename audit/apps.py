from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from audit import auth_events

        user_logged_in.connect(auth_events.on_login, dispatch_uid="audit-login")
        user_login_failed.connect(auth_events.on_login_failed, dispatch_uid="audit-login-failed")
