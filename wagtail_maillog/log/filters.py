"""The mail log's filters (django-filter, shown in Wagtail's filter drawer)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router
from django.db.models import QuerySet
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from wagtail.admin.active_filters import (
    ActiveFilter,
    BaseFilterAdapter,
    register_filter_adapter_class,
)
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet

from ..admin.filters import YesNoFilter
from ..models import Message, Recipient
from ..sources import source_label
from ..status import NOT_DELIVERED, Status
from .access import visible_messages

#: The filter drawer's choices read from the messages: the filter, its ``Message`` field.
CHOICE_FIELDS = {"source": "source", "esp": "esp_name", "related": "content_type"}


def choice_values(messages: QuerySet[Message]) -> dict[str, list[Any]]:
    """The distinct non-empty values of each of :data:`CHOICE_FIELDS` in ``messages``,
    sorted, in one statement (they are read on every view of the mail log)."""
    fields = list(CHOICE_FIELDS.values())
    if not messages.query.where:
        return _distinct_by_index_all(fields)
    # The mail of one user or team: usually few rows, read once for all three fields.
    found: dict[str, set[Any]] = {field: set() for field in fields}
    for row in messages.order_by().values_list(*fields).distinct():
        for field, value in zip(fields, row, strict=True):
            if value not in ("", None):
                found[field].add(value)
    return {field: sorted(values) for field, values in found.items()}


def _distinct_by_index(field: str) -> list[Any]:
    """The distinct non-empty values of one indexed ``Message`` column (see
    :func:`_distinct_by_index_all`)."""
    return _distinct_by_index_all([field])[field]


def _distinct_by_index_all(fields: list[str]) -> dict[str, list[Any]]:
    """The distinct non-empty values of indexed ``Message`` columns, one index seek
    per value (a "loose index scan"), where ``SELECT DISTINCT`` reads every row:
    milliseconds instead of a tenth of a second at a million messages. Each field
    leads an index (``maillog_msg_source``, ``maillog_msg_esp``,
    ``maillog_msg_related``). All fields in one statement, each value cast to text
    (a ``UNION`` needs one type) and converted back here."""
    connection = connections[router.db_for_read(Message)]
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    text = "CHAR" if connection.vendor == "mysql" else "TEXT"
    ctes, parts = [], []
    for n, field in enumerate(fields):
        model_field = Message._meta.get_field(field)
        col = quote(model_field.column)
        first = (
            f"{col} > ''"
            if model_field.get_internal_type() == "CharField"
            else f"{col} IS NOT NULL"
        )
        if connection.vendor == "mysql":
            # MariaDB/MySQL do the loose index scan themselves ("Using index for
            # group-by"), but run the recursive query with a scan per value: 0.1 ms
            # against 600-900 ms at a million messages (docs/performance.md).
            parts.append(
                f"SELECT {n} AS f, CAST(x AS {text}) AS v "
                f"FROM (SELECT DISTINCT {col} AS x FROM {table} WHERE {first}) AS d{n}"
            )
        else:
            ctes.append(
                f"v{n}(x) AS (SELECT MIN({col}) FROM {table} WHERE {first} "
                f"UNION ALL SELECT (SELECT MIN({col}) FROM {table} WHERE {col} > v{n}.x) "
                f"FROM v{n} WHERE v{n}.x IS NOT NULL)"
            )
            parts.append(f"SELECT {n} AS f, CAST(x AS {text}) AS v FROM v{n} WHERE x IS NOT NULL")
    sql = " UNION ALL ".join(parts)
    if ctes:
        sql = f"WITH RECURSIVE {', '.join(ctes)} {sql}"
    found: dict[str, list[Any]] = {field: [] for field in fields}
    with connection.cursor() as cursor:
        cursor.execute(sql)
        for n, value in cursor.fetchall():
            model_field = Message._meta.get_field(fields[n])
            target = model_field.target_field if model_field.is_relation else model_field
            found[fields[n]].append(target.to_python(value))
    return {field: sorted(values) for field, values in found.items()}


def _content_type_choices(ids: list[int]) -> list[tuple[int, str]]:
    """``(id, name)`` of the content types, from Django's cache of them (no query once
    each is known), ordered as the model choice list they replace (app, model).

    The name is the model's ("Member"); with the app's after it ("Member (Club)")
    only where two apps have a model of that name."""
    types = []
    for pk in ids:
        try:
            types.append(ContentType.objects.get_for_id(pk))
        except ContentType.DoesNotExist:  # a model removed since: nothing to filter on
            continue
    types.sort(key=lambda ct: (ct.app_label, ct.model))
    names = Counter(str(ct.name).lower() for ct in types)
    return [(ct.pk, _type_label(ct, names[str(ct.name).lower()] > 1)) for ct in types]


def _type_label(ct: ContentType, with_app: bool) -> str:
    name = capfirst(ct.name)
    if not with_app:
        return name
    model = ct.model_class()
    return f"{name} ({model._meta.app_config.verbose_name if model else ct.app_label})"


class RelatedWidget(forms.MultiWidget):
    """The related type (a select) and the related object's id (hidden: set by the
    links to "All mail about this…"), ``related_type`` and ``related_id`` in the URL."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"type": forms.Select, "id": forms.HiddenInput}, attrs)

    def decompress(self, value: Any) -> list[Any]:
        return list(value) if value else [None, None]

    def id_for_label(self, id_: str) -> str:
        return f"{id_}_0" if id_ else ""  # the select: the filter's label names it


class RelatedField(forms.MultiValueField):
    """``(content type id, object id)``, the object id ``""`` for "any of this type";
    ``None`` without a type (an id is one only within its model)."""

    widget = RelatedWidget

    def __init__(self, *, choices: Any = (), **kwargs: Any) -> None:
        choices = [("", "---------"), *choices]
        fields = (
            forms.TypedChoiceField(choices=choices, coerce=int, required=False),
            forms.CharField(required=False, max_length=64),
        )
        super().__init__(fields, require_all_fields=False, **kwargs)
        self.widget.widgets[0].choices = choices

    def compress(self, data_list: list[Any]) -> tuple[int, str] | None:
        if not data_list or data_list[0] in (None, ""):
            return None
        return data_list[0], data_list[1] or ""


class RelatedFilter(django_filters.Filter):
    """The mail about one object (type and id), or about any object of one type.

    One filter, so that the filter drawer has one entry, "Related type", and no empty
    one for the hidden id; its chip names the object (:class:`RelatedFilterAdapter`)."""

    field_class = RelatedField

    def filter(self, qs: QuerySet[Recipient], value: Any) -> QuerySet[Recipient]:
        if not value:
            return qs
        content_type_id, object_id = value
        qs = qs.filter(message__content_type=content_type_id)
        return qs.filter(message__object_id=object_id) if object_id else qs


class RelatedFilterAdapter(BaseFilterAdapter):
    """ "Related object: Oskar Lindberg (member)" for one object, with the name the
    newest mail about it gave it; "Related type: Member" for a whole type. Removing
    the chip removes both the type and the id."""

    def get_active_filters(self) -> Iterator[ActiveFilter]:
        content_type_id, object_id = self.value
        names = [self.name + suffix for suffix in self.filter.field.widget.widgets_names]
        if object_id:
            label, value = _("Related object"), self.object_label(content_type_id, object_id)
        else:
            choices = dict(self.filter.field.fields[0].choices)
            label, value = self.filter.label, str(choices.get(content_type_id, content_type_id))
        yield ActiveFilter(
            self.bound_field.auto_id, label, value, self.get_url_without_filter_param(names)
        )

    def object_label(self, content_type_id: int, object_id: str) -> str:
        try:
            type_name = str(ContentType.objects.get_for_id(content_type_id).name)
        except ContentType.DoesNotExist:
            type_name = ""
        request = getattr(getattr(self.filter, "parent", None), "request", None)
        user = getattr(request, "user", None)  # the name in the mail this user may see
        messages = visible_messages(user) if user is not None else Message.objects.none()
        name = (
            messages.filter(content_type_id=content_type_id, object_id=object_id)
            .exclude(related_label="")
            .order_by("-created_at")
            .values_list("related_label", flat=True)
            .first()
        )
        if name and type_name:
            return f"{name} ({type_name})"
        return name or f"{type_name} {object_id}".strip()


register_filter_adapter_class(RelatedFilter, RelatedFilterAdapter)


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
    # Choices, not a model choice list: that would read the content types on every view.
    # ``?related_type=…&related_id=…``: the links to "All mail about this…".
    related = RelatedFilter(label=_("Related type"), choices=())
    esp = django_filters.ChoiceFilter(
        label=_("ESP"),
        field_name="message__esp_name",
        choices=(),
    )
    opened = YesNoFilter(
        label=_("Opened"),
        field_name="opened_at",
        lookup_expr="isnull",
        exclude=True,  # Wagtail's All / Yes / No, nothing in the URL for "All"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Offer only what occurs in the mail this user may see.
        user = getattr(self.request, "user", None)
        messages = visible_messages(user) if user is not None else Message.objects.none()
        values = choice_values(messages)
        self.filters["source"].extra["choices"] = [
            (v, source_label(v)) for v in values[CHOICE_FIELDS["source"]]
        ]
        self.filters["esp"].extra["choices"] = [(v, v) for v in values[CHOICE_FIELDS["esp"]]]
        self.filters["related"].extra["choices"] = _content_type_choices(
            values[CHOICE_FIELDS["related"]]
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
