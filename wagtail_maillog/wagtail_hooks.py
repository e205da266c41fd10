"""Wagtail hooks: they only register things defined elsewhere."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import include, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import Menu, MenuItem, SubmenuMenuItem

from .admin import outbox_urls
from .admin import urls as admin_urls
from .admin.access import can_view_log
from .admin.bulk_actions import ResendBulkAction
from .admin.outbox_bulk_actions import CancelBulkAction, RetryBulkAction
from .admin.outbox_views import MailMenuItem
from .admin.outbox_views import build_menu_item as build_outbox_menu_item

#: Other parts of the app (outbox, addresses, mailings) add their pages here.
MAIL_MENU_HOOK = "register_maillog_menu_item"
mail_menu = Menu(register_hook_name=MAIL_MENU_HOOK, construct_hook_name="construct_maillog_menu")


class MailLogMenuItem(MenuItem):
    def is_shown(self, request: HttpRequest) -> bool:
        return can_view_log(request.user)


@hooks.register("register_admin_urls")
def register_admin_urls() -> list[Any]:
    return [path("maillog/", include(admin_urls, namespace="wagtail_maillog"))]


@hooks.register("register_admin_urls")
def register_outbox_urls() -> list[Any]:
    return [path("maillog/outbox/", include(outbox_urls, namespace="wagtail_maillog_outbox"))]


@hooks.register("register_admin_menu_item")
def register_mail_menu() -> SubmenuMenuItem:
    return MailMenuItem(_("Mail"), mail_menu, icon_name="mail", name="mail", order=850)


@hooks.register(MAIL_MENU_HOOK)
def register_mail_log_menu_item() -> MenuItem:
    return MailLogMenuItem(
        _("Mail log"),
        reverse("wagtail_maillog:index"),
        icon_name="list-ul",
        name="mail-log",
        order=100,
    )


@hooks.register(MAIL_MENU_HOOK)
def register_outbox_menu_item() -> MenuItem:
    return build_outbox_menu_item()


@hooks.register("register_permissions")
def register_permissions() -> Any:
    return Permission.objects.filter(
        content_type__app_label="wagtail_maillog",
        codename__in=[
            "view_message",
            "view_all_mail",
            "resend_message",
            "cancel_message",
            "retry_outboxitem",
            "cancel_outboxitem",
            "manage_connectors",
            "lead_team",
        ],
    )


hooks.register("register_bulk_action", ResendBulkAction)
hooks.register("register_bulk_action", RetryBulkAction)
hooks.register("register_bulk_action", CancelBulkAction)


@hooks.register("insert_global_admin_css")
def maillog_css() -> str:
    return format_html(
        '<link rel="stylesheet" href="{}">', static("wagtail_maillog/css/maillog.css")
    )


# ---- Addresses (member address status, confirmation requests) ------------------

from .admin import address_urls  # noqa: E402
from .admin.address_bulk_actions import (  # noqa: E402
    ClearProblemBulkAction,
    SendConfirmationBulkAction,
)
from .admin.address_panels import add_dashboard_panel  # noqa: E402
from .admin.address_views import build_menu_item as build_addresses_menu_item  # noqa: E402


@hooks.register("register_admin_urls")
def register_address_urls() -> list[Any]:
    return [
        path("maillog/addresses/", include(address_urls, namespace="wagtail_maillog_addresses"))
    ]


@hooks.register(MAIL_MENU_HOOK)
def register_addresses_menu_item() -> MenuItem:
    return build_addresses_menu_item()


@hooks.register("register_permissions")
def register_address_permissions() -> Any:
    return Permission.objects.filter(
        content_type__app_label="wagtail_maillog", codename="manage_addresses"
    )


hooks.register("register_bulk_action", SendConfirmationBulkAction)
hooks.register("register_bulk_action", ClearProblemBulkAction)
hooks.register("construct_homepage_panels", add_dashboard_panel)


@hooks.register("insert_global_admin_css")
def addresses_css() -> str:
    return format_html(
        '<link rel="stylesheet" href="{}">', static("wagtail_maillog/css/addresses.css")
    )


# ---- Mailings (member newsletters) and mailing lists --------------------------

from .admin.mailing_forms import limit_page_chooser  # noqa: E402
from .admin.mailing_list_views import MailingListViewSet  # noqa: E402
from .admin.mailing_views import MailingViewSet  # noqa: E402


@hooks.register("register_admin_viewset")
def register_mailing_viewsets() -> list[Any]:
    return [MailingViewSet("wagtail_maillog_mailings"), MailingListViewSet("wagtail_maillog_lists")]


hooks.register("construct_page_chooser_queryset", limit_page_chooser)


@hooks.register("insert_global_admin_js")
def mailing_progress_js() -> str:
    return format_html(
        '<script src="{}" defer></script>', static("wagtail_maillog/js/mailing-progress.js")
    )
