from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailMailLogConfig(AppConfig):
    name = "wagtail_maillog"
    label = "wagtail_maillog"
    verbose_name = _("Mail log")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from anymail.signals import post_send, pre_send, tracking

        from . import checks  # noqa: F401 (registers the system checks)
        from .events import on_tracking
        from .recording import install_failure_hook, on_post_send, on_pre_send

        pre_send.connect(on_pre_send, dispatch_uid="wagtail_maillog.pre_send")
        post_send.connect(on_post_send, dispatch_uid="wagtail_maillog.post_send")
        tracking.connect(on_tracking, dispatch_uid="wagtail_maillog.tracking")

        from .addresses.health import on_status_changed
        from .signals import HEALTH_RECEIVER, status_changing

        # In the transaction that stores status changes: see signals.status_changing.
        status_changing.connect(on_status_changed, dispatch_uid=HEALTH_RECEIVER)
        install_failure_hook()  # a refused or unreachable ESP is recorded too

        from django.db.models.signals import post_migrate

        from .schedules import ensure_schedules

        post_migrate.connect(
            ensure_schedules, sender=self, dispatch_uid="wagtail_maillog.schedules"
        )
