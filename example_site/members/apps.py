from django.apps import AppConfig


class MembersConfig(AppConfig):
    name = "members"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Tell wagtail-maillog where members keep their address (docs/addresses.md).
        from wagtail_maillog.addresses import members

        from .models import Member

        members.register(Member, email_field="email")
