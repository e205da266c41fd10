"""The dashboard panel: the last 7 days' delivered, bounce and complaint rates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils.translation import gettext
from wagtail.admin.ui.components import Component

from . import charts, figures
from .access import can_view_deliverability
from .views import INDEX, day_text, rate_figures

DAYS = 7
SHOWN = ("delivered", "bounce", "complaint")


class DeliverabilityDashboardPanel(Component):
    """On the Wagtail home page, for users who may see the deliverability page.

    One query: the 7 days' daily counts give the rates and the chart.
    """

    name = "maillog_deliverability"
    template_name = "wagtail_maillog/deliverability/dashboard_panel.html"
    order = 140

    def get_context_data(self, parent_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        daily = figures.daily(figures.Period.last(DAYS))
        total = figures.sum_counts(c for _day, c in daily)
        rates = {r["key"]: r for r in rate_figures(total)}
        sent = [c.sent for _day, c in daily]
        bad = [c.bounced + c.complained for _day, c in daily]
        description = "; ".join(
            gettext("%(day)s: %(sent)s sent, %(bad)s bounced or complained")
            % {"day": day_text(day), "sent": charts.count(s), "bad": charts.count(b)}
            for (day, _c), s, b in zip(daily, sent, bad, strict=True)
        )
        return {
            "total": total,
            "rates": [rates[key] for key in SHOWN],
            "crossed": [rates[key] for key in SHOWN if rates[key]["crossing"]],
            "has_mail": total.sent > 0 or any(bad),
            "chart": charts.bar_sparkline(
                [day for day, _c in daily],
                sent,
                bad,
                uid="maillog-deliverability-spark",
                title=gettext("Mail sent per day, last 7 days, bounces and complaints marked"),
                description=description,
            ),
            "page_url": reverse(INDEX),
            "days": DAYS,
        }


def add_dashboard_panel(request: Any, panels: list[Any]) -> None:
    """``construct_homepage_panels`` hook: only for users who may see the figures."""
    if can_view_deliverability(request.user):
        panels.append(DeliverabilityDashboardPanel())
