"""Mailings' registrations: the mailing and mailing-list viewsets, the page chooser's
limit and the results page's script."""

from __future__ import annotations

from typing import Any

from django.templatetags.static import static
from django.utils.html import format_html
from wagtail import hooks

from .forms import limit_page_chooser
from .list_views import MailingListViewSet
from .views import MailingViewSet


@hooks.register("register_admin_viewset")
def register_mailing_viewsets() -> list[Any]:
    return [MailingViewSet("wagtail_maillog_mailings"), MailingListViewSet("wagtail_maillog_lists")]


hooks.register("construct_page_chooser_queryset", limit_page_chooser)


@hooks.register("insert_global_admin_js")
def mailing_progress_js() -> str:
    return format_html(
        '<script src="{}" defer></script>', static("wagtail_maillog/js/mailing-progress.js")
    )
