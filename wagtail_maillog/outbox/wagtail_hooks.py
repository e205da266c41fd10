"""The outbox's registrations: its URLs, menu item, bulk actions and permissions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.urls import include, path
from wagtail import hooks
from wagtail.admin.menu import MenuItem

from ..admin.menu import MAIL_MENU_HOOK
from . import urls
from .bulk_actions import CancelBulkAction, RetryBulkAction
from .views import build_menu_item


@hooks.register("register_admin_urls")
def register_outbox_urls() -> list[Any]:
    return [path("maillog/outbox/", include(urls, namespace="wagtail_maillog_outbox"))]


@hooks.register(MAIL_MENU_HOOK)
def register_outbox_menu_item() -> MenuItem:
    return build_menu_item()


@hooks.register("register_permissions")
def register_outbox_permissions() -> Any:
    return Permission.objects.filter(
        content_type__app_label="wagtail_maillog",
        codename__in=["retry_outboxitem", "cancel_outboxitem", "manage_connectors"],
    )


hooks.register("register_bulk_action", RetryBulkAction)
hooks.register("register_bulk_action", CancelBulkAction)
