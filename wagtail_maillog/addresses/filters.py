"""The Addresses page's filters (django-filter, shown in Wagtail's filter drawer)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet

from ..admin.filters import YesNoFilter
from ..models import Address, AddressStatus
from ..models.addresses import PROBLEMS


class AddressFilterSet(WagtailFilterSet):
    status = django_filters.MultipleChoiceFilter(
        label=_("Status"),
        choices=AddressStatus.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    # ``?problem=true``: the dashboard's "All addresses with a problem"; chip "Yes" / "No"
    problem = YesNoFilter(label=_("Has a problem"), method="filter_problem")
    status_at = django_filters.DateFromToRangeFilter(label=_("Since"), widget=DateRangePickerWidget)

    class Meta:
        model = Address
        fields: list[str] = []

    def filter_problem(
        self, queryset: QuerySet[Address], name: str, value: Any
    ) -> QuerySet[Address]:
        if value is None:
            return queryset
        if value:
            return queryset.filter(status__in=PROBLEMS)
        return queryset.exclude(status__in=PROBLEMS)
