"""The mail log's registrations: its URLs, menu item, bulk action and permissions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.http import HttpRequest
from django.urls import include, path, reverse
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from ..admin.menu import MAIL_MENU_HOOK
from . import urls
from .access import can_view_log
from .bulk_actions import ResendBulkAction
from .webhook_views import add_dashboard_panel


class MailLogMenuItem(MenuItem):
    def is_shown(self, request: HttpRequest) -> bool:
        return can_view_log(request.user)


@hooks.register("register_admin_urls")
def register_admin_urls() -> list[Any]:
    return [path("maillog/", include(urls, namespace="wagtail_maillog"))]


@hooks.register(MAIL_MENU_HOOK)
def register_mail_log_menu_item() -> MenuItem:
    return MailLogMenuItem(
        _("Mail log"),
        reverse("wagtail_maillog:index"),
        icon_name="list-ul",
        name="mail-log",
        order=100,
    )


@hooks.register("register_permissions")
def register_permissions() -> Any:
    return Permission.objects.filter(
        content_type__app_label="wagtail_maillog",
        codename__in=[
            "view_message",
            "view_all_mail",
            "resend_message",
            "cancel_message",
            "lead_team",
        ],
    )


@hooks.register(MAIL_MENU_HOOK)
def register_webhooks_menu_item() -> MenuItem:
    return MailLogMenuItem(
        _("Webhooks"),
        reverse("wagtail_maillog:webhooks"),
        icon_name="link",
        name="webhooks",
        order=900,
    )


hooks.register("register_bulk_action", ResendBulkAction)
hooks.register("construct_homepage_panels", add_dashboard_panel)
