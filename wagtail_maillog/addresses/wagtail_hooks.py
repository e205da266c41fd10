"""The Addresses pages' registrations: URLs, menu item, bulk actions, permission, the
dashboard panel and their stylesheet."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.templatetags.static import static
from django.urls import include, path
from django.utils.html import format_html
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from ..admin.menu import MAIL_MENU_HOOK
from . import urls
from .bulk_actions import ClearProblemBulkAction, SendConfirmationBulkAction
from .panels import add_dashboard_panel
from .views import build_menu_item


@hooks.register("register_admin_urls")
def register_address_urls() -> list[Any]:
    return [path("maillog/addresses/", include(urls, namespace="wagtail_maillog_addresses"))]


@hooks.register(MAIL_MENU_HOOK)
def register_addresses_menu_item() -> MenuItem:
    return build_menu_item()


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
