from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from wagtail_maillog.addresses import members

        from .models import Member

        members.register(Member, email_field="email")
