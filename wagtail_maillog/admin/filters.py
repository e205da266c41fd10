"""The mail log's filters (django-filter, shown in Wagtail's filter drawer)."""

from __future__ import annotations

import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext_lazy as _
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet

from ..models import Message, Recipient
from ..sources import source_label
from ..status import Status


def _distinct_message_values(field: str, label=str) -> list[tuple[str, str]]:
    values = (
        Message.objects.exclude(**{field: ""})
        .order_by(field)
        .values_list(field, flat=True)
        .distinct()
    )
    return [(v, label(v)) for v in values]


class MailLogFilterSet(WagtailFilterSet):
    status = django_filters.MultipleChoiceFilter(
        label=_("Status"), choices=Status.choices, widget=forms.CheckboxSelectMultiple
    )
    created_at = django_filters.DateFromToRangeFilter(label=_("Date"), widget=DateRangePickerWidget)
    source = django_filters.ChoiceFilter(
        label=_("Sent from"),
        field_name="message__source",
        choices=lambda: _distinct_message_values("source", source_label),
    )
    related_type = django_filters.ModelChoiceFilter(
        label=_("Related type"),
        field_name="message__content_type",
        queryset=ContentType.objects.filter(
            pk__in=Message.objects.exclude(content_type=None).values("content_type")
        ).order_by("app_label", "model"),
    )
    related_id = django_filters.CharFilter(
        label=_("Related id"), field_name="message__object_id", widget=forms.HiddenInput
    )
    esp = django_filters.ChoiceFilter(
        label=_("ESP"),
        field_name="message__esp_name",
        choices=lambda: _distinct_message_values("esp_name"),
    )
    opened = django_filters.BooleanFilter(
        label=_("Opened"), field_name="opened_at", lookup_expr="isnull", exclude=True
    )

    class Meta:
        model = Recipient
        fields: list[str] = []
