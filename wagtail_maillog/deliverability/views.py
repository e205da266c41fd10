"""The deliverability page and its CSV: rates over time against the providers' limits.

Everything is read through :mod:`.figures` (the rollup, never the log): a handful of
queries whatever the size of the log.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.translation import gettext, gettext_lazy
from django.views import View
from django.views.generic import TemplateView
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.widgets.button import Button

from ..conf import get_setting
from ..export import inert
from ..models import METRICS, DailyCount
from ..status import OPENED_CAVEAT
from . import charts, figures
from .access import can_view_deliverability
from .forms import BLANK, DeliverabilityFilterForm, value_label

INDEX = "wagtail_maillog_deliverability:index"
CSV = "wagtail_maillog_deliverability:csv"
#: How many recipient domains the breakdown lists (most mail first).
TOP_DOMAINS = 10
TOP_SOURCES = 20
FORM_FIELDS = ("period", "start", "end", "source", "connector", "domain")


def metric_label(metric: str) -> str:
    return str(DailyCount._meta.get_field(metric).verbose_name)


def level_label(level: str) -> str:
    return str({"warning": gettext_lazy("Warning"), "critical": gettext_lazy("Critical")}[level])


def rule_label(threshold: figures.Threshold) -> str:
    """ "Warning at 5 %": how a threshold is named on the page and on the charts."""
    return gettext("%(level)s at %(value)s") % {
        "level": level_label(threshold.level),
        "value": charts.percent(threshold.value, trim=True),
    }


def rate_figures(counts: figures.Counts) -> list[dict[str, Any]]:
    """Each rate of ``counts``, with its limits and the one it crosses (if enough mail)."""
    crossed = {c.rate.key: c for c in figures.crossed(counts)}
    min_volume = get_setting("DELIVERABILITY_MIN_VOLUME")
    found = []
    for rate in figures.RATES:
        value = counts.rate(rate)
        base = counts.base(rate)
        over_any = value is not None and any(value >= t.value for t in rate.thresholds)
        base_metric = rate.denominator if getattr(counts, rate.denominator) else rate.fallback
        crossing = crossed.get(rate.key)
        found.append(
            {
                "rate": rate,
                "key": rate.key,
                "label": rate.label,
                "value": value,
                "text": charts.percent(value),
                "part": getattr(counts, rate.numerator),
                "base": base,
                "of": gettext("%(part)s of %(whole)s %(what)s")
                % {
                    "part": charts.count(getattr(counts, rate.numerator)),
                    "whole": charts.count(base),
                    "what": metric_label(base_metric or rate.denominator),
                },
                "thresholds": [
                    {"level": t.level, "text": rule_label(t), "rule": t.rule}
                    for t in rate.thresholds
                ],
                "crossing": crossing,
                "level": crossing.threshold.level if crossing else "",
                "limit_text": rule_label(crossing.threshold) if crossing else "",
                # over a limit, but on too little mail to say so
                "too_few": over_any and not crossing and base < min_volume,
            }
        )
    return found


def day_text(day: date) -> str:
    return date_format(day, "DATE_FORMAT")


def period_text(period: figures.Period) -> str:
    if period.start == period.end:
        return day_text(period.start)
    return gettext("%(start)s to %(end)s") % {
        "start": day_text(period.start),
        "end": day_text(period.end),
    }


class DeliverabilityAccessMixin:
    """Only users with ``view_deliverability`` get in (Wagtail's refusal otherwise)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_view_deliverability(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class DeliverabilityView(DeliverabilityAccessMixin, WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_maillog/deliverability/index.html"
    page_title = gettext_lazy("Deliverability")
    header_icon = "crosshairs"

    def get_breadcrumbs_items(self) -> list[dict[str, Any]]:
        return [
            {"url": reverse("wagtailadmin_home"), "label": gettext("Home")},
            {"url": "", "label": gettext("Deliverability")},
        ]

    @cached_property
    def form(self) -> DeliverabilityFilterForm:
        return DeliverabilityFilterForm(self.request.GET)

    def query(self, **changes: str) -> str:
        """The page's filters as a query string, with ``changes``."""
        params = self.request.GET.copy()
        for key in list(params):
            if key not in FORM_FIELDS:
                del params[key]
        for key, value in changes.items():
            params[key] = value
        return params.urlencode()

    @cached_property
    def csv_url(self) -> str:
        return f"{reverse(CSV)}?{self.query()}"

    def get_header_more_buttons(self) -> list[Button]:
        if not self.form.is_valid():
            return []
        return [Button(gettext("Download CSV"), url=self.csv_url, icon_name="download")]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        form = self.form
        context.update(form=form, updated_at=figures.updated_at(), opened_caveat=OPENED_CAVEAT)
        if not form.is_valid():
            return context
        period, slice = form.get_period(), form.get_slice()
        daily = figures.daily(period, slice)
        total = figures.sum_counts(c for _day, c in daily)
        days = [day for day, _c in daily]
        sliced = ", ".join(f"{name}: {value}" for name, value in form.slice_labels())
        when = period_text(period)
        context.update(
            period=period,
            period_text=when,
            slice_text=sliced,
            has_mail=any(getattr(total, m) for m in METRICS),
            total=total,
            rates=rate_figures(total),
            min_volume=get_setting("DELIVERABILITY_MIN_VOLUME"),
            metrics=[(m, metric_label(m)) for m in METRICS],
            daily_rows=[
                (day, day_text(day), [charts.count(getattr(c, m)) for m in METRICS])
                for day, c in daily
            ],
            rate_rows=[
                (day, day_text(day), [charts.percent(c.rate(r)) for r in figures.RATES])
                for day, c in daily
            ],
            rate_labels=[r.label for r in figures.RATES],
            counts_chart=self.counts_chart(days, daily, when, sliced),
            rate_charts=[self.rate_chart(days, daily, r, when, sliced) for r in figures.RATES],
            breakdowns=self.breakdowns(period, slice),
            csv_url=self.csv_url,
        )
        return context

    def counts_chart(
        self, days: list[date], daily: list[tuple[date, figures.Counts]], when: str, sliced: str
    ) -> Any:
        labels = {m: metric_label(m).capitalize() for m in METRICS}
        tips = [
            f"{day_text(day)}: "
            + ", ".join(f"{labels[m]} {charts.count(getattr(c, m))}" for m in METRICS)
            for day, c in daily
        ]
        title = gettext("Mail per day, %(period)s") % {"period": when}
        return charts.line_chart(
            days,
            [charts.Line(m, labels[m], [getattr(c, m) for _d, c in daily]) for m in METRICS],
            uid="maillog-chart-counts",
            title=f"{title} ({sliced})" if sliced else title,
            description=gettext(
                "Recipients per day: %(series)s. The numbers are in the table below the chart."
            )
            % {"series": ", ".join(labels.values())},
            tips=tips,
            css_class="maillog-chart--wide",
        )

    def rate_chart(
        self,
        days: list[date],
        daily: list[tuple[date, figures.Counts]],
        rate: figures.Rate,
        when: str,
        sliced: str,
    ) -> dict[str, Any]:
        values = [c.rate(rate) for _d, c in daily]
        tips = [
            f"{day_text(day)}: {rate.label} {charts.percent(c.rate(rate))}"
            f" ({charts.count(getattr(c, rate.numerator))} / {charts.count(c.base(rate))})"
            for day, c in daily
        ]
        title = gettext("%(rate)s per day, %(period)s") % {"rate": rate.label, "period": when}
        limits = "; ".join(rule_label(t) for t in rate.thresholds)
        description = gettext("The numbers are in the table below the charts.")
        if limits:
            description = f"{limits}. {description}"
        return {
            "rate": rate,
            "svg": charts.line_chart(
                days,
                [charts.Line(rate.numerator, str(rate.label), values)],
                uid=f"maillog-chart-rate-{rate.key}",
                title=f"{title} ({sliced})" if sliced else title,
                description=description,
                rates=True,
                rules=[charts.Rule(t.level, t.value, rule_label(t)) for t in rate.thresholds],
                tips=tips,
                width=360,
                height=210,
                steps=4,
                days_shown=4,
                css_class="maillog-chart--small",
            ),
        }

    def breakdowns(self, period: figures.Period, slice: figures.Slice) -> list[dict[str, Any]]:
        esps = self.form.esps
        found = []
        limits = {"domain": TOP_DOMAINS, "source": TOP_SOURCES, "connector": None}
        per = figures.breakdowns(period, slice, limits)
        for by, heading, limit in (
            ("domain", gettext("By recipient domain"), TOP_DOMAINS),
            ("source", gettext("By source"), TOP_SOURCES),
            ("connector", gettext("By connector / ESP"), None),
        ):
            rows = []
            for value, counts in per[by]:
                rows.append(
                    {
                        "value": value,
                        "label": value_label(by, value, esps),
                        "url": f"{reverse(INDEX)}?{self.query(**{by: value or BLANK})}",
                        "sent": charts.count(counts.sent),
                        "rates": rate_figures(counts),
                    }
                )
            found.append(
                {
                    "by": by,
                    "heading": heading,
                    "column": self.form.fields[by].label,
                    "rows": rows,
                    "top": limit if limit is not None and len(rows) == limit else None,
                }
            )
        return found


class DeliverabilityCsvView(DeliverabilityAccessMixin, View):
    """The daily series of the page's filters, one row per day (spreadsheet-safe)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        form = DeliverabilityFilterForm(request.GET)
        if not form.is_valid():
            errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
            return HttpResponseBadRequest(errors, content_type="text/plain; charset=utf-8")
        period, slice = form.get_period(), form.get_slice()
        shown = {
            name: value_label(name, value, form.esps) if value is not None else ""
            for name, value in vars(slice).items()
        }
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            ["day", "source", "connector", "domain", *METRICS]
            + [f"{rate.key}_rate" for rate in figures.RATES]
        )
        for day, counts in figures.daily(period, slice):
            rates = [counts.rate(rate) for rate in figures.RATES]
            writer.writerow(
                inert(cell)
                for cell in [
                    day.isoformat(),
                    shown["source"],
                    shown["connector"],
                    shown["domain"],
                    *(getattr(counts, m) for m in METRICS),
                    *("" if r is None else f"{r:.6f}" for r in rates),
                ]
            )
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        name = f"deliverability-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
