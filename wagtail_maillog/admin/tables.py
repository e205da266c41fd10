"""The mail log table: django-tables2, rendered with Wagtail's listing markup.

The view orders, filters and paginates the queryset (as every Wagtail listing
does); the table only renders the page it is given, through
``wagtail_maillog/tables/listing.html``, which emits the markup of Wagtail's
own tables and the checkboxes its bulk-action script expects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_tables2 as tables
from django import forms
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import template_localtime
from django.utils.translation import gettext_lazy as _

from ..models import Recipient
from ..sources import source_label
from ..status import OPENED_CAVEAT
from ..templatetags.maillog_tags import status_badge


class BulkCheckboxColumn(tables.Column):
    """Wagtail's bulk-action checkbox, per row and select-all in the header."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("empty_values", ())
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("verbose_name", "")
        super().__init__(**kwargs)

    def render(self, record: Recipient) -> str:
        return format_html(
            '<input type="checkbox" data-object-id="{}" data-bulk-action-checkbox '
            'class="bulk-action-checkbox" aria-label="{}" '
            'aria-describedby="recipient_{}_title">',
            record.pk,
            _("Select"),
            record.pk,
        )


class ShortDateTimeColumn(tables.Column):
    """A date and time in the user's time zone and the locale's short format.

    What ``tables.DateTimeColumn(format="SHORT_DATETIME_FORMAT")`` shows, without
    its template: that column compiles and renders a template with a fresh
    context per cell, a tenth of a 50-row list page.
    """

    def render(self, value: datetime) -> str:
        return date_format(template_localtime(value), "SHORT_DATETIME_FORMAT")


class MailLogTable(tables.Table):
    select = BulkCheckboxColumn(attrs={"td": {"class": "bulk-action-checkbox-cell"}})
    created_at = ShortDateTimeColumn(verbose_name=_("Date"))
    related = tables.Column(
        verbose_name=_("Related object"), accessor="message__related_label", orderable=False
    )
    address = tables.Column(verbose_name=_("Recipient"))
    subject = tables.Column(verbose_name=_("Subject"), accessor="message__subject", orderable=False)
    # Accessor "pk": the badge is drawn from the record; with the field itself,
    # django-tables2 would first look up its choice label (a translation) per row.
    status = tables.Column(verbose_name=_("Status"), accessor="pk", order_by=("status",))
    source = tables.Column(verbose_name=_("Sent from"), accessor="message__source", orderable=False)
    opened = tables.Column(
        verbose_name=_("Opened"),
        accessor="opened_at",
        orderable=False,
        attrs={"th": {"title": OPENED_CAVEAT}},
    )

    caption = _("Mail log")

    class Meta:
        model = Recipient
        fields: tuple[str, ...] = ()
        sequence = (
            "select",
            "created_at",
            "related",
            "address",
            "subject",
            "status",
            "source",
            "opened",
        )
        template_name = "wagtail_maillog/tables/listing.html"
        row_attrs = {"data-recipient": lambda record: record.pk}
        attrs = {"class": "listing maillog-listing"}
        order_by_field = "ordering"
        empty_text = _("No mail matches.")

    @property
    def media(self) -> forms.Media:
        """Wagtail's listing view merges a table's media into the page."""
        return forms.Media()

    def render_related(self, record: Recipient) -> str:
        message = record.message
        if not message.content_type_id:
            return "—"
        url = reverse("wagtail_maillog:related", args=[message.content_type_id, message.object_id])
        return format_html(
            '<a href="{}">{}</a><div class="maillog-muted">{}</div>',
            url,
            message.related_label or message.object_id,
            message.content_type.name.capitalize(),
        )

    def render_subject(self, record: Recipient) -> str:
        url = reverse("wagtail_maillog:detail", args=[record.message_id])
        return format_html(
            '<a href="{}" id="recipient_{}_title">{}</a>',
            url,
            record.pk,
            record.message.subject or _("(no subject)"),
        )

    def render_source(self, value: str) -> str:
        return source_label(value)

    def render_status(self, record: Recipient) -> str:
        return status_badge(record.status, record.reason)

    def render_opened(self, record: Recipient) -> str:
        if record.opened_at is None:
            return format_html('<span class="w-sr-only">{}</span>', _("No"))
        return format_html(
            '<span class="maillog-opened" title="{}">✓<span class="w-sr-only">{}</span></span>',
            OPENED_CAVEAT,
            _("Opened"),
        )

    def value_related(self, record: Recipient) -> str:
        return record.message.related_label
