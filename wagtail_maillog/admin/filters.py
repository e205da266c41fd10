"""Filters every listing of the app shares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django_filters
from wagtail.admin.active_filters import (
    ActiveFilter,
    BaseFilterAdapter,
    register_filter_adapter_class,
)
from wagtail.admin.widgets import BooleanRadioSelect


class YesNoFilter(django_filters.BooleanFilter):
    """Yes or no: Wagtail's All / Yes / No radios, ``?name=true`` or ``?name=false`` in
    the URL, and an active-filter chip that reads "Yes" or "No" (not "True")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", BooleanRadioSelect)
        super().__init__(*args, **kwargs)


class YesNoFilterAdapter(BaseFilterAdapter):
    """The chip of a :class:`YesNoFilter`: the widget's own word for the value."""

    def get_active_filters(self) -> Iterator[ActiveFilter]:
        widget = self.filter.field.widget
        choices = {str(value): label for value, label in widget.choices}
        (value,) = widget.format_value(self.value) or [""]
        yield ActiveFilter(
            self.bound_field.auto_id,
            self.filter.label,
            str(choices.get(value, self.value)),
            self.get_url_without_filter_param(self.name),
        )


register_filter_adapter_class(YesNoFilter, YesNoFilterAdapter)
