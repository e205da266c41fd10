"""The Addresses table: django-tables2, rendered with Wagtail's listing markup.

As for the mail log, the view orders, filters and paginates; the table only
renders the page it is given (``wagtail_maillog/tables/listing.html``).
The members of the page's addresses are looked up by the view beforehand
(one query per registered member model) and handed in as ``members``.
"""

from __future__ import annotations

from typing import Any

import django_tables2 as tables
from django import forms
from django.db.models import Model
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..addresses import members
from ..admin.columns import HumanReadableDateColumn
from ..models import Address, AddressStatus
from ..templatetags.maillog_tags import badge

#: address status -> (Wagtail icon, tone). Tones are the colours of maillog.css.
APPEARANCE: dict[str, tuple[str, str]] = {
    AddressStatus.UNCONFIRMED: ("radio-empty", "neutral"),
    AddressStatus.REQUESTED: ("mail", "neutral"),
    AddressStatus.CONFIRMED: ("circle-check", "positive"),
    AddressStatus.BOUNCED: ("error", "critical"),
    AddressStatus.SPAM: ("warning", "critical"),
    AddressStatus.UNSUBSCRIBED: ("circle-xmark", "critical"),
    AddressStatus.BLOCKED: ("lock", "critical"),
    AddressStatus.INVALID: ("cross", "critical"),
}


def address_badge(status: str, reason: str = "") -> SafeString:
    """Icon and label of an address status, coloured; the reason as a tooltip."""
    look = APPEARANCE.get(status, ("help", "neutral"))
    return badge(status, AddressStatus, look, reason, kind="address-status")


def member_link(member: Model | None, url: str | None) -> str:
    """The member's name, linked to its edit view when there is one.

    With several member models registered, the kind of member is shown below.
    """
    if member is None:
        return "—"
    name = format_html('<a href="{}">{}</a>', url, member) if url else format_html("{}", member)
    if len(members.registered()) < 2:
        return name
    kind = str(member._meta.verbose_name).capitalize()
    return format_html('{}<div class="maillog-muted">{}</div>', name, kind)


class AddressCheckboxColumn(tables.Column):
    """Wagtail's bulk-action checkbox, per row and select-all in the header."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("empty_values", ())
        kwargs.setdefault("orderable", False)
        kwargs.setdefault("verbose_name", "")
        super().__init__(**kwargs)

    def render(self, record: Address) -> str:
        return format_html(
            '<input type="checkbox" data-object-id="{}" data-bulk-action-checkbox '
            'class="bulk-action-checkbox" aria-label="{}" '
            'aria-describedby="address_{}_title">',
            record.pk,
            _("Select"),
            record.pk,
        )


class AddressTable(tables.Table):
    select = AddressCheckboxColumn(attrs={"td": {"class": "bulk-action-checkbox-cell"}})
    address = tables.Column(verbose_name=_("Address"))
    status = tables.Column(verbose_name=_("Status"))
    status_at = HumanReadableDateColumn(verbose_name=_("Since"))
    last_event_at = HumanReadableDateColumn(verbose_name=_("Last event"))
    member = tables.Column(verbose_name=_("Member"), empty_values=(), orderable=False)

    caption = _("Addresses")

    class Meta:
        model = Address
        fields: tuple[str, ...] = ()
        sequence = ("select", "address", "status", "status_at", "last_event_at", "member")
        template_name = "wagtail_maillog/tables/listing.html"
        row_attrs = {"data-address": lambda record: record.pk}
        attrs = {"class": "listing maillog-listing maillog-addresses-listing"}
        order_by_field = "ordering"
        empty_text = _("No address matches.")

    def __init__(
        self,
        data: Any,
        *args: Any,
        members: dict[str, Model] | None = None,
        member_urls: dict[str, str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data, *args, **kwargs)
        self.members = members or {}
        self.member_urls = member_urls or {}

    @property
    def media(self) -> forms.Media:
        """Wagtail's listing view merges a table's media into the page."""
        return forms.Media()

    def render_address(self, record: Address) -> str:
        url = reverse("wagtail_maillog_addresses:detail", args=[record.pk])
        return format_html(
            '<a href="{}" id="address_{}_title">{}</a>', url, record.pk, record.address
        )

    def render_status(self, record: Address) -> str:
        return address_badge(record.status, record.reason)

    def render_member(self, record: Address) -> str:
        return member_link(self.members.get(record.address), self.member_urls.get(record.address))

    def value_member(self, record: Address) -> str:
        member = self.members.get(record.address)
        return str(member) if member is not None else ""
