"""What was sent, to whom, what happened to it, and each attempt to send it.

Designed for millions of rows: the mail log lists *recipients* (one row per
address of a message), so the columns it filters and sorts by live on
:class:`Recipient`, with ``created_at`` copied from the message to let a
filtered list be read in index order without a join.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..merging import fill
from ..status import Status
from .fields import PayloadJSONField


class Importance(models.TextChoices):
    HIGH = "high", _("High")
    NORMAL = "normal", _("Normal")
    LOW = "low", _("Low")


class Role(models.TextChoices):
    TO = "to", _("To")
    CC = "cc", _("Cc")
    BCC = "bcc", _("Bcc")


class PartialIndexesWholeOnMariaDB:
    """A model with partial indexes: no models.W037 ("MariaDB does not support
    indexes with conditions") at each migrate there, where the whole index Django
    creates instead serves the same lookups."""

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        errors = super().check(**kwargs)  # type: ignore[misc]
        return [error for error in errors if error.id != "models.W037"]


class Message(PartialIndexesWholeOnMariaDB, models.Model):
    """One email, as it was handed to the backend."""

    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    subject = models.TextField(_("subject"), blank=True)
    from_email = models.CharField(_("from"), max_length=320, blank=True)
    reply_to = models.JSONField(_("reply to"), default=list, blank=True)
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    tags = models.JSONField(_("tags"), default=list, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    importance = models.CharField(
        _("importance"), max_length=8, choices=Importance.choices, default=Importance.NORMAL
    )
    source = models.CharField(_("sent from"), max_length=64, blank=True)
    esp_name = models.CharField(_("ESP"), max_length=64, blank=True)
    connector = models.CharField(_("connector"), max_length=64, blank=True)
    #: The ESP's spelling of a merge field in this batch's subject and body
    #: (``"%recipient.{}%"``), where known; None for a message without merge fields.
    #: With each recipient's ``merge_values``: what they received (see merging.py).
    merge_field = models.CharField(_("merge field"), max_length=64, null=True, blank=True)

    content_type = models.ForeignKey(
        ContentType,
        verbose_name=_("related type"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # led by Meta.indexes' composite index
    )
    object_id = models.CharField(_("related id"), max_length=64, blank=True)
    related_object = GenericForeignKey("content_type", "object_id")
    related_label = models.CharField(
        _("related object"),
        max_length=255,
        blank=True,
        help_text=_("How the related object was named when the mail was sent."),
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # led by Meta.indexes' composite index
    )
    team = models.ForeignKey(
        "auth.Group",
        verbose_name=_("team"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # led by Meta.indexes' composite index
    )
    system_generated = models.BooleanField(_("system-generated"), default=False)

    attachment_count = models.PositiveIntegerField(_("attachments"), default=0)
    attachment_names = models.JSONField(_("attachment names"), default=list, blank=True)
    body_stored = models.BooleanField(default=False)
    body_text = models.TextField(_("text body"), blank=True)
    body_html = models.TextField(_("HTML body"), blank=True)

    resent_from = models.ForeignKey(
        "self",
        verbose_name=_("resent from"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="resends",
        db_index=False,  # Meta.indexes' partial index
    )

    class Meta:
        verbose_name = _("email")
        verbose_name_plural = _("emails")
        # The keys that most mail has not (no related object, no user or team: system
        # mail; not a resend) are indexed where set only: four index entries fewer to
        # write for each such mail (SQLite and PostgreSQL; MariaDB/MySQL have no
        # partial indexes, and Django creates them whole there, see ``check``).
        indexes = [
            models.Index(fields=["source", "created_at"], name="maillog_msg_source"),
            models.Index(
                fields=["content_type", "object_id"],
                name="maillog_msg_related",
                condition=models.Q(content_type__isnull=False),
            ),
            models.Index(fields=["esp_name", "created_at"], name="maillog_msg_esp"),
            models.Index(
                fields=["created_by", "created_at"],
                name="maillog_msg_creator",
                condition=models.Q(created_by__isnull=False),
            ),
            models.Index(
                fields=["team", "created_at"],
                name="maillog_msg_team",
                condition=models.Q(team__isnull=False),
            ),
            models.Index(
                fields=["resent_from"],
                name="maillog_msg_resent_from",
                condition=models.Q(resent_from__isnull=False),
            ),
        ]
        permissions = [
            ("view_all_mail", _("Can view mail of all users")),
            ("resend_message", _("Can resend email")),
            ("cancel_message", _("Can cancel pending email")),
        ]

    def __str__(self) -> str:
        return self.subject or str(_("(no subject)"))

    @property
    def can_resend(self) -> bool:
        """Attachments are never kept, so only mail without them can be sent again."""
        return self.attachment_count == 0 and self.body_stored


def handed_over(column: str = "esp_message_id") -> str:
    """The condition of the partial index ``maillog_rcpt_espid`` for raw SQL: a lookup
    by ESP id carries this very term, or SQLite cannot prove the index covers it
    (``esp_message_id <> ''`` does not do; the ORM's ``.exclude(esp_message_id="")``
    does). PostgreSQL proves it from the id itself, a literal in the SQL (Django
    binds values client-side), but not in a plan made for any value."""
    return f"NOT ({column} = '')"


class Recipient(PartialIndexesWholeOnMariaDB, models.Model):
    """One address of a message, with its current delivery status."""

    message = models.ForeignKey(
        Message, verbose_name=_("email"), on_delete=models.CASCADE, related_name="recipients"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    address = models.CharField(_("recipient"), max_length=254)
    name = models.CharField(_("name"), max_length=255, blank=True)
    role = models.CharField(_("role"), max_length=3, choices=Role.choices, default=Role.TO)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.NONE
    )
    status_at = models.DateTimeField(_("status changed"), null=True, blank=True)
    opened_at = models.DateTimeField(_("first opened"), null=True, blank=True)
    reason = models.TextField(
        _("reason"), blank=True, help_text=_("Why the mail failed, as the ESP or we said it.")
    )
    esp_message_id = models.CharField(_("ESP message id"), max_length=255, blank=True)
    #: The values of a batch's merge fields for this recipient (anymail's
    #: ``merge_data``), one-time tokens redacted; None outside a batch.
    merge_values = models.JSONField(_("merge values"), null=True, blank=True)

    class Meta:
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")
        indexes = [
            models.Index(fields=["created_at"], name="maillog_rcpt_created"),
            models.Index(fields=["status", "created_at"], name="maillog_rcpt_status"),
            models.Index(fields=["address", "created_at"], name="maillog_rcpt_address"),
            # Only recipients the ESP took (migration 0019): a queued recipient wrote an
            # entry under '' that no lookup wanted and its hand-over moved. A lookup by
            # ESP id says ``NOT (esp_message_id = '')`` (:func:`handed_over`), without
            # which SQLite cannot use it (MariaDB/MySQL: a whole index).
            models.Index(
                fields=["esp_message_id", "address"],
                name="maillog_rcpt_espid",
                condition=~models.Q(esp_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def subject(self) -> str:
        """The subject this recipient received: a batch's merge fields filled in."""
        message = self.message
        return fill(message.subject, message.merge_field, self.merge_values)

    def body(self) -> tuple[str, str]:
        """(text, html) of the stored body as this recipient received it."""
        message = self.message
        return (
            fill(message.body_text, message.merge_field, self.merge_values),
            fill(message.body_html, message.merge_field, self.merge_values, html=True),
        )

    @property
    def opened(self) -> bool:
        return self.opened_at is not None


class Event(PartialIndexesWholeOnMariaDB, models.Model):
    """One ESP event, kept as it came (append-only history).

    ``recipient`` is empty for an *orphan*: an event about a message we have not
    (yet) recorded. It is attached when the message shows up.
    """

    recipient = models.ForeignKey(
        Recipient,
        verbose_name=_("recipient"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
    )
    esp_name = models.CharField(_("ESP"), max_length=64)
    esp_message_id = models.CharField(_("ESP message id"), max_length=255, blank=True)
    address = models.CharField(_("address"), max_length=254, blank=True)
    event_type = models.CharField(_("event"), max_length=32)
    timestamp = models.DateTimeField(_("time"), null=True, blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    event_id = models.CharField(_("ESP event id"), max_length=255, blank=True)
    dedupe_key = models.CharField(max_length=64)  # unique: see Meta.constraints
    description = models.TextField(_("description"), blank=True)
    mta_response = models.TextField(_("MTA response"), blank=True)
    reject_reason = models.CharField(_("reject reason"), max_length=32, blank=True)
    click_url = models.TextField(_("clicked URL"), blank=True)
    user_agent = models.TextField(_("user agent"), blank=True)
    raw = PayloadJSONField(_("raw ESP payload"), null=True, blank=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        # Orphans only (migration 0020): its one lookup is an orphan's adoption
        # (``events.attach_orphans``); a matched event, nearly every one, writes no
        # entry. MariaDB/MySQL: a whole index.
        indexes = [
            models.Index(
                fields=["esp_message_id", "address"],
                name="maillog_event_espid",
                condition=models.Q(recipient__isnull=True),
            ),
        ]
        # A constraint, not ``unique=True``: on PostgreSQL the field would also get a
        # second, ``LIKE`` index (varchar_pattern_ops) that nothing uses and every
        # webhook batch pays for (a quarter of the event INSERT's index work).
        constraints = [models.UniqueConstraint(fields=["dedupe_key"], name="maillog_event_dedupe")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.address}"


class SendAttempt(models.Model):
    """One hand-over of a message to a backend, and how it went."""

    class Outcome(models.TextChoices):
        STARTED = "started", _("In progress")
        INTERRUPTED = "interrupted", _("Interrupted")
        SENT = "sent", _("Handed over")
        FAILED = "failed", _("Failed")
        BLOCKED = "blocked", _("Blocked")
        CANCELLED = "cancelled", _("Cancelled")

    message = models.ForeignKey(
        Message, verbose_name=_("email"), on_delete=models.CASCADE, related_name="attempts"
    )
    at = models.DateTimeField(_("time"), default=timezone.now)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    connector = models.CharField(_("connector"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    response = PayloadJSONField(_("ESP response"), null=True, blank=True)

    class Meta:
        verbose_name = _("send attempt")
        verbose_name_plural = _("send attempts")
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} {self.at:%Y-%m-%d %H:%M}"


class WebhookRejection(models.Model):
    """How many webhook requests of one ESP were refused in one hour, and why.

    A counter per (ESP, hour, reason), not a row per request: a flood of bad
    requests cannot grow the table. Kept 7 days (the daily purge).
    """

    class Reason(models.TextChoices):
        VALIDATION = "validation", _("Failed authentication or signature")
        MALFORMED = "malformed", _("Malformed or empty payload")
        TOO_LARGE = "too_large", _("Too large")

    esp_name = models.CharField(_("ESP"), max_length=64)
    hour = models.DateTimeField(_("hour"))
    reason = models.CharField(_("reason"), max_length=16, choices=Reason.choices)
    count = models.PositiveIntegerField(_("requests"), default=0)

    class Meta:
        verbose_name = _("refused webhook requests")
        verbose_name_plural = _("refused webhook requests")
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(
                fields=["esp_name", "hour", "reason"], name="maillog_webhook_rejection"
            )
        ]

    def __str__(self) -> str:
        return f"{self.esp_name} {self.hour:%Y-%m-%d %H}:00 {self.reason}: {self.count}"
