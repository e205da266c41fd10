"""The deliverability page's filters: a period and, optionally, one slice of the mail."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from ..sources import source_label
from . import figures

#: The longest date range the page draws (a year, leap day included).
MAX_DAYS = 366
LAST_DAYS = ("7", "30", "90")
DEFAULT_PERIOD = "30"
#: Stands in the URL for the slice the rollup keeps as "" (other domains, mail
#: without a source or connector): "" is "all" there. No domain or code is "*".
BLANK = "*"


def blank_label(name: str) -> str:
    return str(
        {
            "domain": _("Other domains"),
            "source": _("No source"),
            "connector": _("No connector"),
        }[name]
    )


def connector_label(connector: str, esps: list[str]) -> str:
    """ "postmark", or "transactional (Postmark)" when the ESP says more than the name."""
    others = [e for e in esps if e.lower() != connector.lower()]
    if not connector:
        return (
            f"{blank_label('connector')} ({', '.join(esps)})" if esps else blank_label("connector")
        )
    return f"{connector} ({', '.join(others)})" if others else connector


def value_label(name: str, value: str, esps: dict[str, list[str]] | None = None) -> str:
    """How a slice's value is shown: a source's label, "Other domains" for ""."""
    if name == "connector":
        return connector_label(value, (esps or {}).get(value, []))
    if not value:
        return blank_label(name)
    return source_label(value) if name == "source" else value


class DateInput(forms.DateInput):
    """The browser's own date picker; it sends ISO dates (2026-11-03)."""

    input_type = "date"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, format="%Y-%m-%d")


class DeliverabilityFilterForm(forms.Form):
    """Read from the query string; a bad value is a form error, never a 500."""

    period = forms.ChoiceField(
        label=_("Period"),
        choices=[
            ("7", _("Last 7 days")),
            ("30", _("Last 30 days")),
            ("90", _("Last 90 days")),
            ("range", _("Date range")),
        ],
        required=False,
    )
    start = forms.DateField(label=_("From"), required=False, widget=DateInput())
    end = forms.DateField(label=_("To"), required=False, widget=DateInput())
    source = forms.ChoiceField(label=_("Sent from"), required=False)
    connector = forms.ChoiceField(label=_("Connector / ESP"), required=False)
    domain = forms.ChoiceField(label=_("Recipient domain"), required=False)

    def __init__(self, data: QueryDict, today: date | None = None) -> None:
        data = data.copy()
        if not data.get("period"):
            data["period"] = "range" if data.get("start") or data.get("end") else DEFAULT_PERIOD
        super().__init__(data)
        self.today = today
        self.esps = figures.connector_esps()
        everything = {
            "source": _("All sources"),
            "connector": _("All connectors"),
            "domain": _("All domains"),
        }
        for name, every in everything.items():
            values = list(self.esps) if name == "connector" else figures.choices(name)
            blank = [(BLANK, value_label(name, "", self.esps))] if "" in values else []
            named = sorted(
                ((v, value_label(name, v, self.esps)) for v in values if v),
                key=lambda pair: pair[1].lower(),
            )
            self.fields[name].choices = [("", every), *named, *blank]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:  # a date that is not one, an unknown source: said by its field
            return data
        start, end = data.get("start"), data.get("end")
        if data.get("period") == "range":
            if not start or not end:
                raise forms.ValidationError(_("Give both dates of the range, or pick a period."))
            if start > end:
                self.add_error("end", _("This date is before the first one."))
            elif (end - start).days + 1 > MAX_DAYS:
                raise forms.ValidationError(_("Pick at most %(days)s days.") % {"days": MAX_DAYS})
        return data

    def get_period(self) -> figures.Period:
        """The days asked for (only once the form is valid)."""
        data = self.cleaned_data
        if data["period"] == "range":
            return figures.Period(data["start"], data["end"])
        return figures.Period.last(int(data["period"]), self.today)

    def get_slice(self) -> figures.Slice:
        data = self.cleaned_data
        return figures.Slice(
            **{
                name: ("" if data[name] == BLANK else data[name]) if data.get(name) else None
                for name in ("source", "connector", "domain")
            }
        )

    def slice_labels(self) -> list[tuple[str, str]]:
        """(field label, value label) of each slice asked for: for titles and the CSV."""
        found = []
        for name, value in vars(self.get_slice()).items():
            if value is not None:
                found.append((str(self.fields[name].label), value_label(name, value, self.esps)))
        return found
