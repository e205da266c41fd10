"""The mail log table: django-tables2, rendered with Wagtail's listing markup.

The view orders, filters and paginates the queryset (as every Wagtail listing
does); the table only renders the page it is given, through
``wagtail_maillog/tables/listing.html``, which emits the markup of Wagtail's
own tables and the checkboxes its bulk-action script expects.
"""

from __future__ import annotations

from typing import Any

import django_tables2 as tables
from django import forms
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from wagtail.admin.widgets.button import Button, ButtonWithDropdown

from ..admin.columns import BulkCheckboxColumn, HumanReadableDateColumn, PrerenderedRows
from ..mailings.sending import SOURCE as MAILING_SOURCE
from ..models import Recipient
from ..sources import source_label
from ..status import CANCELLABLE, OPENED_CAVEAT
from ..templatetags.maillog_tags import status_badge
from .access import CANCEL, RESEND

#: Stand-ins for a row's message id and title in the row menu rendered once per page.
_STAND_IN_PK = 2_147_000_001
_STAND_IN_TITLE = "maillog-row-title-7f3a9c"


class MailLogTable(PrerenderedRows, tables.Table):
    select = BulkCheckboxColumn(attrs={"td": {"class": "bulk-action-checkbox-cell"}})
    created_at = HumanReadableDateColumn(verbose_name=_("Date"))
    # empty_values=(): the render methods below decide what an empty label or subject
    # shows (the object's id, "(no subject)"), not django-tables2's "—".
    related = tables.Column(
        verbose_name=_("Related object"),
        accessor="message__related_label",
        orderable=False,
        empty_values=(),
    )
    address = tables.Column(verbose_name=_("Recipient"))
    subject = tables.Column(
        verbose_name=_("Subject"), accessor="message__subject", orderable=False, empty_values=()
    )
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

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.may_resend = bool(user and user.has_perm(RESEND))
        self.may_cancel = bool(user and user.has_perm(CANCEL))
        self._menus: dict[tuple[bool, bool], str] = {}
        self._badges: dict[tuple[str, str], str] = {}
        self._sources: dict[str, str] = {}
        self._opened: dict[bool, str] = {}
        self._detail_url = reverse("wagtail_maillog:detail", args=[_STAND_IN_PK])

    def render_subject(self, record: Recipient) -> str:
        """The subject (a batch recipient's own), linked to the message, with Wagtail's
        "⋯" menu of row actions.

        The menu is rendered once per page for each set of actions a row may show,
        with a stand-in message id and title, which each row then replaces: a
        template per row was most of the time of a list page.
        """
        subject = record.subject or gettext("(no subject)")
        may_resend, may_cancel = self._allowed(record)
        menu = self._menus.get((may_resend, may_cancel))
        if menu is None:
            menu = render_to_string(
                "wagtailadmin/shared/buttons.html",
                {"buttons": [self._menu(_STAND_IN_PK, _STAND_IN_TITLE, may_resend, may_cancel)]},
            )
            self._menus[may_resend, may_cancel] = menu
        menu = menu.replace(f"/{_STAND_IN_PK}/", f"/{record.message_id}/").replace(
            _STAND_IN_TITLE, escape(subject)
        )
        return format_html(
            '<div class="maillog-row-title"><a href="{}" id="recipient_{}_title">{}</a>'
            '<ul class="actions maillog-row-actions">{}</ul></div>',
            self._detail_url.replace(f"/{_STAND_IN_PK}/", f"/{record.message_id}/"),
            record.pk,
            subject,
            mark_safe(menu),  # rendered by Wagtail's template; the title escaped above
        )

    def _allowed(self, record: Recipient) -> tuple[bool, bool]:
        """(Resend, Cancel sending): cheap checks on the row only; the confirmation
        pages give the full reason when an action is refused after all."""
        message = record.message
        may_resend = (
            self.may_resend
            and not message.attachment_count
            and (message.body_stored or message.source == MAILING_SOURCE)
        )
        return may_resend, self.may_cancel and record.status in CANCELLABLE

    def _menu(self, pk: int, title: str, may_resend: bool, may_cancel: bool) -> ButtonWithDropdown:
        buttons = [
            Button(
                label,
                url=reverse(f"wagtail_maillog:{view}", args=[pk]),
                icon_name=icon,
                attrs={"data-action-name": name},
                priority=priority,
            )
            for allowed, label, view, icon, name, priority in (
                (True, gettext("Open"), "detail", "doc-full", "open", 1),
                (may_resend, gettext("Resend"), "resend", "resubmit", "resend", 10),
                (may_cancel, gettext("Cancel sending"), "cancel", "cross", "cancel", 20),
            )
            if allowed
        ]
        return ButtonWithDropdown(
            buttons=buttons,
            icon_name="dots-horizontal",
            attrs={"aria-label": gettext("More options for '%(title)s'") % {"title": title}},
        )

    def render_source(self, value: str) -> str:
        label = self._sources.get(value)
        if label is None:
            label = self._sources[value] = source_label(value)
        return label

    def render_status(self, record: Recipient) -> str:
        key = (record.status, record.reason)
        badge = self._badges.get(key)
        if badge is None:  # a page shows a few statuses, each many times
            badge = self._badges[key] = status_badge(*key)
        return badge

    def render_opened(self, record: Recipient) -> str:
        opened = record.opened_at is not None
        html = self._opened.get(opened)
        if html is None:  # one of two, the same in every row
            html = self._opened[opened] = (
                format_html(
                    '<span class="maillog-opened" title="{}">✓<span class="w-sr-only">{}</span>'
                    "</span>",
                    OPENED_CAVEAT,
                    _("Opened"),
                )
                if opened
                else format_html('<span class="w-sr-only">{}</span>', _("No"))
            )
        return html

    def value_related(self, record: Recipient) -> str:
        return record.message.related_label
