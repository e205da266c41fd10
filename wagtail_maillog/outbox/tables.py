"""The outbox table: django-tables2, in the markup of Wagtail's own listings.

As for the mail log, the view orders, filters and paginates; the table renders
one page through ``wagtail_maillog/tables/listing.html``. "To" and "Subject"
are always shown; the other data columns can be hidden per user
(``table.columns.hide``), see :data:`OPTIONAL_COLUMNS`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import django_tables2 as tables
from django import forms
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator, capfirst
from django.utils.timesince import timeuntil
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from wagtail.admin.templatetags.wagtailadmin_tags import timesince_simple
from wagtail.admin.widgets.button import Button, ButtonWithDropdown

from ..admin.columns import BulkCheckboxColumn
from ..models import OutboxItem, SendState
from ..models.messages import Importance, Role
from ..models.outbox import CANCELLABLE_STATES
from ..templatetags.maillog_tags import badge
from .access import CANCEL, RETRY

#: Columns that are always visible.
REQUIRED_COLUMNS = ("to", "subject")
#: Columns a user may hide (name -> label), in table order.
OPTIONAL_COLUMNS: dict[str, Any] = {
    "state": _("Send state"),
    "attempts": _("Attempts"),
    "connector": _("Connector"),
    "importance": _("Importance"),
    "system_generated": _("System-generated"),
    "last_attempt_at": _("Last attempt"),
    "last_error": _("Last failure message"),
    "first_failure_at": _("Registered"),
    "next_attempt_at": _("Next attempt"),
    "related": _("Related object"),
    "related_type": _("Related type"),
    "attachments": _("Attachments"),
}
#: How many "To" addresses a row lists before "+ n more".
TO_SHOWN = 3

#: send state -> (Wagtail icon, tone of maillog.css)
STATE_APPEARANCE: dict[str, tuple[str, str]] = {
    SendState.QUEUED: ("time", "waiting"),
    SendState.SCHEDULED: ("date", "waiting"),
    SendState.RETRY_PENDING: ("resubmit", "warning"),
    SendState.SENDING: ("upload", "waiting"),
    SendState.FAILED: ("error", "critical"),
    SendState.CONNECTOR_DISABLED: ("lock", "warning"),
}


def state_badge(state: str, title: str = "") -> SafeString:
    """An outbox send state as the mail log shows statuses: icon, label, colour."""
    return badge(state, SendState, STATE_APPEARANCE.get(state, ("help", "neutral")), title)


def retry_refusal(item: OutboxItem) -> str:
    """Why ``item`` cannot be retried now, or ""."""
    if item.state == SendState.SENDING:
        return gettext("This mail is being handed to its connector right now.")
    if item.state == SendState.SCHEDULED and not item.attempts:
        # nothing failed yet: a "retry" would only send it before its time
        return gettext("This mail has not been tried yet: it is sent at its scheduled time.")
    return ""


def cancel_refusal(item: OutboxItem) -> str:
    """Why ``item`` cannot be cancelled now, or ""."""
    if item.state not in CANCELLABLE_STATES:
        return gettext(
            "This mail is being handed to its connector right now and can no longer be cancelled."
        )
    return ""


def breakable(address: str) -> str:
    """An address that may wrap before its "@" (and nowhere else)."""
    local, at, domain = address.rpartition("@")
    if not at:
        return format_html("{}", address)
    return format_html("{}<wbr>@{}", local, domain)


class OutboxCheckboxColumn(BulkCheckboxColumn):
    def render(self, record: OutboxItem) -> str:
        return format_html(
            '<input type="checkbox" data-object-id="{}" data-bulk-action-checkbox '
            'class="bulk-action-checkbox" aria-label="{}" aria-describedby="outbox_{}_title">',
            record.pk,
            gettext("Select"),
            record.pk,
        )


def relative_date(value: datetime, due_text: str = "") -> str:
    """ "3 hours ago" / "in 25 minutes" (or ``due_text`` once past), full date as tooltip."""
    now = timezone.now()
    if value > now + timedelta(minutes=1):
        text = gettext("in %(time)s") % {"time": timeuntil(value, now).split(",")[0]}
    else:
        text = due_text or timesince_simple(value)
    return render_to_string(
        "wagtail_maillog/outbox/date.html",
        {"date": value, "text": capfirst(text), "tooltip_format": "DATETIME_FORMAT"},
    )


class RelativeDateTimeColumn(tables.Column):
    def render(self, value: datetime) -> str:
        return relative_date(value)


def _date_column(label: Any) -> RelativeDateTimeColumn:
    return RelativeDateTimeColumn(verbose_name=label)


class OutboxTable(tables.Table):
    select = OutboxCheckboxColumn(attrs={"td": {"class": "bulk-action-checkbox-cell"}})
    to = tables.Column(
        verbose_name=_("To"),
        accessor="message",
        orderable=False,
        empty_values=(),
        attrs={"td": {"class": "maillog-outbox-to"}},
    )
    subject = tables.Column(
        verbose_name=_("Subject"),
        accessor="message__subject",
        empty_values=(),
        attrs={"td": {"class": "maillog-outbox-subject-cell"}},
    )
    connector = tables.Column(verbose_name=OPTIONAL_COLUMNS["connector"])
    importance = tables.Column(
        verbose_name=OPTIONAL_COLUMNS["importance"], accessor="message__importance"
    )
    system_generated = tables.Column(
        verbose_name=OPTIONAL_COLUMNS["system_generated"],
        accessor="message__system_generated",
        orderable=False,
        empty_values=(),
    )
    last_attempt_at = _date_column(OPTIONAL_COLUMNS["last_attempt_at"])
    last_error = tables.Column(verbose_name=OPTIONAL_COLUMNS["last_error"], orderable=False)
    first_failure_at = _date_column(OPTIONAL_COLUMNS["first_failure_at"])
    next_attempt_at = _date_column(OPTIONAL_COLUMNS["next_attempt_at"])
    related = tables.Column(
        verbose_name=OPTIONAL_COLUMNS["related"],
        accessor="message__related_label",
        orderable=False,
        empty_values=(),
    )
    related_type = tables.Column(
        verbose_name=OPTIONAL_COLUMNS["related_type"],
        accessor="message__content_type",
        orderable=False,
    )
    attempts = tables.Column(verbose_name=OPTIONAL_COLUMNS["attempts"])
    state = tables.Column(verbose_name=OPTIONAL_COLUMNS["state"])
    attachments = tables.Column(
        verbose_name=OPTIONAL_COLUMNS["attachments"],
        accessor="message__attachment_count",
        orderable=False,
    )

    caption = _("Outbox")

    class Meta:
        model = OutboxItem
        fields: tuple[str, ...] = ()
        sequence = ("select", *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
        template_name = "wagtail_maillog/tables/listing.html"
        row_attrs = {
            "data-outbox-item": lambda record: record.pk,
            "data-state": lambda record: record.state,
        }
        attrs = {"class": "listing maillog-listing maillog-outbox-listing"}
        order_by_field = "ordering"
        empty_text = _("The outbox is empty.")

    def __init__(self, *args: Any, user: Any = None, hidden: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.may_retry = bool(user and user.has_perm(RETRY))
        self.may_cancel = bool(user and user.has_perm(CANCEL))
        for name in hidden:
            if name in OPTIONAL_COLUMNS:
                self.columns.hide(name)

    @property
    def media(self) -> forms.Media:
        """Wagtail's listing view merges a table's media into the page."""
        return forms.Media()

    def render_to(self, record: OutboxItem) -> str:
        """The "To" addresses (a few), "+ n more" for the rest and for Cc/Bcc."""
        recipients = list(record.message.recipients.all())
        to = [r.address for r in recipients if r.role == Role.TO]
        others = [f"{r.get_role_display()}: {r.address}" for r in recipients if r.role != Role.TO]
        shown = format_html_join(", ", "{}", ((breakable(a),) for a in to[:TO_SHOWN]))
        more = max(0, len(to) - TO_SHOWN) + len(others)
        if not to:
            shown = format_html("—")
        if more:
            return format_html(
                '{} <span class="maillog-muted" title="{}">{}</span>',
                shown,
                ", ".join([*to, *others]),
                gettext("+ %(count)d more") % {"count": more},
            )
        return shown

    def render_subject(self, record: OutboxItem) -> str:
        """The subject, linked to the detail, with Wagtail's "⋯" menu of row actions."""
        subject = record.message.subject or gettext("(no subject)")
        url = reverse("wagtail_maillog_outbox:detail", args=[record.pk])
        buttons = [
            Button(
                gettext("Open"),
                url=url,
                icon_name="doc-full",
                attrs={"data-action-name": "open"},
                priority=1,
            ),
            Button(
                gettext("Quick view"),
                url=url,  # without JavaScript: the full page
                icon_name="view",
                attrs={
                    "data-action-name": "quick-view",
                    "data-maillog-quick-view": reverse(
                        "wagtail_maillog_outbox:quick_view", args=[record.pk]
                    ),
                },
                priority=2,
            ),
        ]
        if self.may_retry and not retry_refusal(record):
            buttons.append(
                Button(
                    gettext("Retry"),
                    url=reverse("wagtail_maillog_outbox:retry", args=[record.pk]),
                    icon_name="resubmit",
                    attrs={"data-action-name": "retry"},
                    priority=10,
                )
            )
        if self.may_cancel and not cancel_refusal(record):
            buttons.append(
                Button(
                    gettext("Cancel sending"),
                    url=reverse("wagtail_maillog_outbox:cancel", args=[record.pk]),
                    icon_name="cross",
                    attrs={"data-action-name": "cancel"},
                    priority=20,
                )
            )
        more = ButtonWithDropdown(
            buttons=buttons,
            icon_name="dots-horizontal",
            attrs={"aria-label": gettext("More options for '%(title)s'") % {"title": subject}},
        )
        return render_to_string(
            "wagtail_maillog/outbox/subject_cell.html",
            {"item": record, "subject": subject, "url": url, "buttons": [more]},
        )

    def render_next_attempt_at(self, record: OutboxItem, value: datetime) -> str:
        if record.state == SendState.CONNECTOR_DISABLED:
            return format_html(
                '<span class="maillog-muted">{}</span>', gettext("Once the connector is enabled")
            )
        return relative_date(value, due_text=gettext("Due now"))

    def render_importance(self, value: str) -> str:
        label = Importance(value).label if value in Importance.values else value
        if value == Importance.HIGH:
            return format_html('<strong class="maillog-outbox-high">{}</strong>', label)
        return format_html("{}", label)

    def render_system_generated(self, value: bool) -> str:
        if value:
            return format_html(
                '<span class="maillog-outbox-yes">✓<span class="w-sr-only">{}</span></span>',
                gettext("Yes"),
            )
        return format_html('<span class="w-sr-only">{}</span>', gettext("No"))

    def render_last_error(self, value: str) -> str:
        return format_html(
            '<span class="maillog-outbox-error" title="{}">{}</span>',
            value,
            Truncator(value).chars(90),
        )

    def render_related(self, record: OutboxItem) -> str:
        message = record.message
        if not message.content_type_id:
            return "—"
        url = reverse("wagtail_maillog:related", args=[message.content_type_id, message.object_id])
        return format_html('<a href="{}">{}</a>', url, message.related_label or message.object_id)

    def render_related_type(self, value: Any) -> str:
        return value.name.capitalize()

    def render_state(self, record: OutboxItem) -> str:
        title = record.last_error if record.state == SendState.FAILED else ""
        if record.state == SendState.CONNECTOR_DISABLED:
            title = gettext("Waits until the connector %(name)s is enabled again.") % {
                "name": record.connector
            }
        return state_badge(record.state, title)
