"""Columns every listing of the app shares (django-tables2, Wagtail's markup), and the
rows of a table rendered in one pass (:class:`PrerenderedRows`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_tables2 as tables
from django.utils.formats import date_format, get_format, localize
from django.utils.functional import Promise
from django.utils.html import avoid_wrapping, conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst
from django.utils.timesince import timesince
from django.utils.timezone import template_localtime
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django_tables2.columns.linkcolumn import BaseLinkColumn
from django_tables2.columns.manytomanycolumn import ManyToManyColumn
from django_tables2.utils import Accessor, AttributeDict, signature

# Wagtail's words, translated in Wagtail's catalog (under an alias: not copied into ours).
_wagtails = _


class PerLanguage:
    """A translated text looked up once per language: a listing shows some words in
    every row, and each lookup of a translation costs (most of all in English, where
    every catalog misses). For module-level constants only."""

    def __init__(self, text: Promise) -> None:
        self.text = text
        self._found: dict[str | None, str] = {}

    def __str__(self) -> str:
        language = get_language()
        found = self._found.get(language)
        if found is None:
            found = self._found[language] = str(self.text)
        return found


_SELECT = PerLanguage(_("Select"))
_JUST_NOW = PerLanguage(_wagtails("just now"))
_AGO = PerLanguage(_wagtails("%(time_period)s ago"))
_ZERO_MINUTES = PerLanguage(_wagtails("0 minutes"))


class BulkCheckboxColumn(tables.Column):
    """Wagtail's bulk-action checkbox, per row and select-all in the header."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("empty_values", ())
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("verbose_name", "")
        super().__init__(**kwargs)

    def render(self, record: Any) -> str:
        return format_html(
            '<input type="checkbox" data-object-id="{}" data-bulk-action-checkbox '
            'class="bulk-action-checkbox" aria-label="{}" '
            'aria-describedby="recipient_{}_title">',
            record.pk,
            _SELECT,
            record.pk,
        )


def human_readable_date(value: datetime | None) -> str:
    """Wagtail's ``{% human_readable_date %}``: "20 minutes ago", the exact time on hover.

    The same markup as Wagtail's template (its tooltip controller, a ``<time>``
    element), built without a template: a list page shows 50 rows of dates,
    and rendering a template per cell costs a tenth of the page.
    """
    if value is None:
        return "—"
    local = template_localtime(value)
    return format_html(
        '<button type="button" class="w-human-readable-date" data-controller="w-tooltip" '
        'data-w-tooltip-content-value="{}" data-w-tooltip-placement-value="top">'
        '<time class="w-human-readable-date__date" datetime="{}">{}</time></button>',
        date_format(local, get_format("DATETIME_FORMAT") or "N j, Y, P"),
        local.isoformat(),  # date_format(local, "c"), without parsing a format
        capfirst(timesince_simple(value)),
    )


def timesince_simple(value: datetime) -> str:
    """Wagtail's ``timesince_simple`` ("19 hours ago", "just now"), its words looked up
    once per language rather than once per row."""
    period = timesince(value).split(",")[0]
    if period == avoid_wrapping(str(_ZERO_MINUTES)):
        return str(_JUST_NOW)
    return str(_AGO) % {"time_period": period}


class HumanReadableDateColumn(tables.Column):
    """A date as Wagtail's listings show it (see :func:`human_readable_date`)."""

    def render(self, value: datetime) -> str:
        return human_readable_date(value)


#: What django-tables2 may pass to a column's ``render``, by argument name.
_CELL_ARGUMENTS = ("value", "record", "column", "bound_column", "bound_row", "table")


class _Cell:
    """How one column's cells are rendered, worked out once per table rather than per cell."""

    def __init__(self, table: tables.Table, bound_column: Any) -> None:
        column = bound_column.column
        self.name = bound_column.name
        self.bound_column = bound_column
        self.accessor = Accessor(bound_column.accessor)
        self.render = bound_column.render
        self.empty_values = column.empty_values
        self.default = bound_column.default
        wanted, catch_all = signature(self.render)
        self.arguments: tuple[str, ...] | None = None if catch_all else wanted
        self.renderable = catch_all or all(name in _CELL_ARGUMENTS for name in wanted)
        attrs = {**table.attrs, **column.attrs}
        td = attrs.get("td", attrs.get("cell", {}))
        field = self.accessor.get_field(table._meta.model)
        # What the fast path does not do, django-tables2 does, cell by cell: the
        # choice label of a field with choices, links, many-to-many values, and
        # cell attributes computed from the record.
        self.as_django_tables2 = bool(
            isinstance(column, (BaseLinkColumn, ManyToManyColumn))
            or bound_column.link
            or getattr(field, "choices", None)
            or any(callable(value) for value in td.values())
        )
        self.td = "" if self.as_django_tables2 else bound_column.attrs["td"].as_html()

    def html(self, row: Any) -> str:
        """``<td ...>cell</td>`` for ``row``, as ``listing.html`` renders it."""
        if self.as_django_tables2:
            value = row.get_cell(self.name)
            self.bound_column.current_value, self.bound_column.current_record = value, row.record
            td = self.bound_column.attrs["td"].as_html()
        else:
            value, td = self._value(row), self.td
        content = _as_in_template(value)
        return f"<td {td}>{content}</td>" if td else f"<td>{content}</td>"

    def _value(self, row: Any) -> Any:
        try:
            value = self.accessor.resolve(row.record)
        except Exception:  # as django-tables2: an accessor that finds nothing is empty
            value = None
        if value in self.empty_values:
            return self.default
        if not self.renderable:
            return None  # ``render`` wants an argument django-tables2 does not give
        given = {
            "value": value,
            "record": row.record,
            "column": self.bound_column.column,
            "bound_column": self.bound_column,
            "bound_row": row,
            "table": row.table,
        }
        if self.arguments is not None:
            given = {name: given[name] for name in self.arguments}
        return self.render(**given)


class _RowAttrs:
    """A row's attributes (``Meta.row_attrs``), as ``BoundRow.attrs`` gives them, with the
    arguments of each callable worked out once per table rather than per row."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs
        # Nested values (computed recursively by django-tables2): left to BoundRow.attrs.
        self.as_django_tables2 = any(isinstance(value, dict) for value in attrs.values())
        self.arguments = {
            name: signature(value) for name, value in attrs.items() if callable(value)
        }

    def html(self, row: Any) -> str:
        if self.as_django_tables2:
            return row.attrs.as_html()
        given = {"table": row.table, "record": row.record}
        values = {}
        for name, value in self.attrs.items():
            if name in self.arguments:
                wanted, catch_all = self.arguments[name]
                if catch_all or all(arg in given for arg in wanted):
                    value = value(**(given if catch_all else {a: given[a] for a in wanted}))
                else:
                    value = None  # as call_with_appropriate
            values[name] = value
        parity = row.get_even_odd_css_class()
        values["class"] = f"{values['class']} {parity}" if values.get("class") else parity
        return AttributeDict(values).as_html()


def _as_in_template(value: Any) -> str:
    """``{{ value }}`` in a template: local time, localized, escaped unless safe."""
    value = localize(template_localtime(value))
    return conditional_escape(value if isinstance(value, str) else str(value))


class PrerenderedRows:
    """A django-tables2 table whose body rows are rendered here, in one pass.

    django-tables2 renders each cell through a chain of lookups (the accessor, a
    choice label, the signature of ``render``, the cell's attributes), and the
    listing template loops over rows and cells: together most of the time of a
    mail log page. Here each column's way of rendering is worked out once per table;
    the markup, the values and the escaping are those of ``listing.html``'s loop,
    which the template still uses for tables without this mixin.
    """

    #: ``listing.html`` asks this before looping over the rows itself.
    prerenders_rows = True
    columns: Any
    rows: Any
    row_attrs: dict[str, Any]

    def rendered_rows(self) -> SafeString:
        """The ``<tr>`` elements of the table's body."""
        cells: list[_Cell] = [_Cell(self, bound_column) for bound_column in self.columns]  # type: ignore[arg-type]
        row_attrs = _RowAttrs(self.row_attrs)
        html: list[str] = []
        for row in self.rows:
            html.append(f"<tr {row_attrs.html(row)}>")
            html.extend(cell.html(row) for cell in cells)
            html.append("</tr>")
        return mark_safe("\n".join(html))  # noqa: S308 (each value escaped in _as_in_template)
