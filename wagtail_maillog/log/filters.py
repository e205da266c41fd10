"""The mail log's filters (django-filter, shown in Wagtail's filter drawer)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet
from wagtail.admin.widgets import BooleanRadioSelect

from ..models import Message, Recipient
from ..sources import source_label
from ..status import NOT_DELIVERED, Status
from .access import visible_messages


def _distinct(messages: QuerySet[Message], field: str, label: Any = str) -> list[tuple[str, str]]:
    if messages.query.where:  # the mail of one user or team: usually few rows
        values = messages.exclude(**{field: ""}).order_by(field).values_list(field, flat=True)
        found = list(values.distinct())
    else:
        found = _distinct_by_index(field)
    return [(v, label(v)) for v in found]


def _distinct_by_index(field: str) -> list[Any]:
    """The distinct non-empty values of an indexed ``Message`` column, one index
    seek per value (a "loose index scan"), where ``SELECT DISTINCT`` reads every
    row: milliseconds instead of a tenth of a second at a million messages.
    ``field`` leads an index (``maillog_msg_source``, ``maillog_msg_esp``,
    ``maillog_msg_related``)."""
    connection = connections[router.db_for_read(Message)]
    column = Message._meta.get_field(field).column
    quote = connection.ops.quote_name
    table, col = quote(Message._meta.db_table), quote(column)
    first = (
        f"{col} > ''"
        if Message._meta.get_field(field).get_internal_type() == "CharField"
        else f"{col} IS NOT NULL"
    )
    if connection.vendor == "mysql":
        # MariaDB/MySQL do the loose index scan themselves ("Using index for
        # group-by"), but run the recursive query with a scan per value: 0.1 ms
        # against 600-900 ms at a million messages (docs/performance.md).
        sql = f"SELECT DISTINCT {col} FROM {table} WHERE {first}"
    else:
        sql = (
            f"WITH RECURSIVE v(x) AS (SELECT MIN({col}) FROM {table} WHERE {first} "
            f"UNION ALL SELECT (SELECT MIN({col}) FROM {table} WHERE {col} > v.x) FROM v "
            "WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return sorted(x for (x,) in cursor.fetchall())


#: The status filter's value for "every status in NOT_DELIVERED".
NOT_DELIVERED_CHOICE = "not_delivered"


class MailLogFilterSet(WagtailFilterSet):
    status = django_filters.MultipleChoiceFilter(
        label=_("Status"),
        # every status, and first the group of all that did not reach the mailbox
        choices=[(NOT_DELIVERED_CHOICE, _("Not delivered (any failure)")), *Status.choices],
        widget=forms.CheckboxSelectMultiple,
        method="filter_status",
    )
    created_at = django_filters.DateFromToRangeFilter(label=_("Date"), widget=DateRangePickerWidget)
    source = django_filters.ChoiceFilter(
        label=_("Sent from"),
        field_name="message__source",
        choices=(),
    )
    related_type = django_filters.ModelChoiceFilter(
        label=_("Related type"),
        field_name="message__content_type",
        queryset=ContentType.objects.none(),
    )
    related_id = django_filters.CharFilter(
        label=_("Related id"), field_name="message__object_id", widget=forms.HiddenInput
    )
    esp = django_filters.ChoiceFilter(
        label=_("ESP"),
        field_name="message__esp_name",
        choices=(),
    )
    opened = django_filters.BooleanFilter(
        label=_("Opened"),
        field_name="opened_at",
        lookup_expr="isnull",
        exclude=True,
        widget=BooleanRadioSelect,  # Wagtail's All / Yes / No, nothing in the URL for "All"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Offer only what occurs in the mail this user may see.
        user = getattr(self.request, "user", None)
        messages = visible_messages(user) if user is not None else Message.objects.none()
        self.filters["source"].extra["choices"] = _distinct(messages, "source", source_label)
        self.filters["esp"].extra["choices"] = _distinct(messages, "esp_name")
        if messages.query.where:
            used = messages.exclude(content_type=None).values("content_type")
        else:
            used = _distinct_by_index("content_type")
        self.filters["related_type"].queryset = ContentType.objects.filter(pk__in=used).order_by(
            "app_label", "model"
        )

    def filter_status(
        self, queryset: QuerySet[Recipient], name: str, value: list[str]
    ) -> QuerySet[Recipient]:
        """The ticked statuses, with "Not delivered" standing for all of :data:`NOT_DELIVERED`.

        A column of the row itself: no join, so no duplicates to remove."""
        if not value:
            return queryset
        wanted = {v for v in value if v != NOT_DELIVERED_CHOICE}
        if NOT_DELIVERED_CHOICE in value:
            wanted |= NOT_DELIVERED
        return queryset.filter(status__in=sorted(wanted))

    class Meta:
        model = Recipient
        fields: list[str] = []
