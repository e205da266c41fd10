"""The deliverability page's registrations: URLs, Mail menu item, permission,
dashboard panel and stylesheet."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import include, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from ..admin.menu import MAIL_MENU_HOOK
from . import urls
from .access import can_view_deliverability
from .panels import add_dashboard_panel


class DeliverabilityMenuItem(MenuItem):
    def is_shown(self, request: HttpRequest) -> bool:
        return can_view_deliverability(request.user)


@hooks.register("register_admin_urls")
def register_deliverability_urls() -> list[Any]:
    return [
        path(
            "maillog/deliverability/",
            include(urls, namespace="wagtail_maillog_deliverability"),
        )
    ]


@hooks.register(MAIL_MENU_HOOK)
def register_deliverability_menu_item() -> MenuItem:
    return DeliverabilityMenuItem(
        _("Deliverability"),
        reverse("wagtail_maillog_deliverability:index"),
        icon_name="crosshairs",
        name="deliverability",
        order=800,
    )


@hooks.register("register_permissions")
def register_deliverability_permission() -> Any:
    return Permission.objects.filter(
        content_type__app_label="wagtail_maillog", codename="view_deliverability"
    )


hooks.register("construct_homepage_panels", add_dashboard_panel)


@hooks.register("insert_global_admin_css")
def deliverability_css() -> str:
    return format_html(
        '<link rel="stylesheet" href="{}">', static("wagtail_maillog/css/deliverability.css")
    )
