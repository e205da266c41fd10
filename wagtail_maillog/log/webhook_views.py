"""Webhook health in the admin: a page per ESP the site uses (the URL to paste into the
ESP, the last event, events and refused requests of the last day) and a dashboard
warning when a webhook seems not to reach the site (see :mod:`..webhook_health`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.generic import TemplateView
from wagtail.admin.ui.components import Component
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from .. import webhook_health
from ..conf import get_setting
from ..models import WebhookRejection
from ..webhook_urls import served_tracking
from .access import can_view_log
from .views import LogAccessMixin


def tracking_webhooks() -> list[tuple[str, str]]:
    """(ESP name, URL path) of each tracking webhook the site serves and mounts."""
    return sorted((p.callback.view_class.esp_name, path) for p, path in served_tracking())


def warnings_for(esp_names: list[str]) -> list[dict[str, Any]]:
    """What the dashboard warns about: a silent webhook, refused requests."""
    found = []
    refused_by_esp = webhook_health.refused_by_esp()
    for esp in esp_names:
        silence = webhook_health.silent(esp)
        refused = sum(refused_by_esp.get(esp, {}).values())
        if silence or refused:
            found.append({"esp": esp, "silence": silence, "refused": refused})
    return found


class WebhookHealthView(LogAccessMixin, WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_maillog/webhooks.html"
    page_title = _("Webhooks")
    header_icon = "link"

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": gettext("Home")},
            {"url": "", "label": gettext("Webhooks")},
        ]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        reasons = dict(WebhookRejection.Reason.choices)
        rows = []
        refused_by_esp = webhook_health.refused_by_esp()
        for esp, path in tracking_webhooks():
            activity = webhook_health.activity(esp)
            refused = refused_by_esp.get(esp, {})
            rows.append(
                {
                    "esp": esp,
                    "url": self.request.build_absolute_uri(path),
                    "activity": activity,
                    "silence": webhook_health.silent(esp),
                    "refused": [(reasons.get(r, r), n) for r, n in sorted(refused.items())],
                }
            )
        context.update(
            rows=rows,
            basic_auth=bool(_webhook_secret()),
            silence_hours=get_setting("WEBHOOK_SILENCE_HOURS"),
        )
        return context


def _webhook_secret() -> Any:
    from django.conf import settings

    return (getattr(settings, "ANYMAIL", {}) or {}).get("WEBHOOK_SECRET")


class WebhookHealthDashboardPanel(Component):
    """On the Wagtail home page, only while something is wrong."""

    name = "maillog_webhooks"
    template_name = "wagtail_maillog/webhooks_dashboard_panel.html"
    order = 150

    def __init__(self, warnings: list[dict[str, Any]]) -> None:
        self.warnings = warnings

    def get_context_data(self, parent_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "warnings": self.warnings,
            "page_url": reverse("wagtail_maillog:webhooks"),
            "silence_hours": get_setting("WEBHOOK_SILENCE_HOURS"),
        }


def add_dashboard_panel(request: Any, panels: list[Any]) -> None:
    """``construct_homepage_panels`` hook: for users who may see the log, when warned."""
    if not can_view_log(request.user):
        return
    found = warnings_for([esp for esp, _path in tracking_webhooks()])
    if found:
        panels.append(WebhookHealthDashboardPanel(found))
