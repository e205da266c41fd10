"""Member newsletters: a mailing, its audience, and simple address lists.

A mailing's recipients are ordinary log rows (:class:`Message` /
:class:`Recipient`) whose message is related to the mailing, so the mail log,
the outbox and the address health all apply to them unchanged.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from modelcluster.fields import ParentalKey
from modelcluster.models import ClusterableModel
from wagtail.fields import RichTextField


class MailingState(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SCHEDULED = "scheduled", _("Scheduled")
    STARTING = "starting", _("Starting")
    QUEUING = "queuing", _("Queuing recipients")
    #: Every recipient is in the outbox; the workers are handing them to the ESP.
    QUEUED = "queued", _("Sending")
    #: No recipient waits any more: ``finished_at`` is when the last one was handed over.
    SENT = "sent", _("Sent")
    CANCELLED = "cancelled", _("Cancelled")
    #: It could not start (queuing failed), or not one recipient could be handed over.
    FAILED = "failed", _("Failed")


#: States in which nothing has gone out yet, so the mailing can be cancelled outright.
NOT_STARTED = frozenset({MailingState.SCHEDULED, MailingState.STARTING})


class Mailing(models.Model):
    """One newsletter to an audience of members."""

    subject = models.CharField(
        _("subject"),
        max_length=255,
        help_text=_("Merge fields work here too, e.g. {{ name }}."),
    )
    from_email = models.CharField(
        _("from"),
        max_length=320,
        blank=True,
        help_text=_("Leave empty for the site's default sender."),
    )
    reply_to = models.EmailField(_("reply to"), blank=True)
    body = RichTextField(
        _("body"),
        blank=True,
        help_text=_(
            "Merge fields: {{ name }}, {{ email }}, {{ unsubscribe_url }}. "
            "An unsubscribe link is always added at the end."
        ),
    )
    page = models.ForeignKey(
        "wagtailcore.Page",
        verbose_name=_("page as body"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("Send this page instead of the body above."),
    )
    audience = models.CharField(_("audience"), max_length=100)
    connector = models.CharField(
        _("connector"),
        max_length=64,
        blank=True,
        help_text=_("The outbox connector it goes through (empty: the default)."),
    )
    state = models.CharField(
        _("state"), max_length=16, choices=MailingState.choices, default=MailingState.DRAFT
    )
    send_at = models.DateTimeField(_("send at"), null=True, blank=True)

    created_at = models.DateTimeField(_("created"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("sent by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    #: How many times the queuing task started: the latest run owns the mailing, and an
    #: earlier one still going stops at its next chunk.
    queue_runs = models.PositiveIntegerField(default=0, editable=False)
    queued_at = models.DateTimeField(_("all recipients queued"), null=True, blank=True)
    finished_at = models.DateTimeField(_("last recipient handed over"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("cancelled by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    #: Members looked at, mails queued, and members skipped by reason (set while queuing).
    member_count = models.PositiveIntegerField(_("members"), default=0)
    queued_count = models.PositiveIntegerField(_("queued"), default=0)
    skipped = models.JSONField(_("skipped"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)

    #: "Update results": a background task asks the ESP about unfinished recipients.
    refresh_running = models.BooleanField(default=False)
    refresh_done = models.PositiveIntegerField(default=0)
    refresh_total = models.PositiveIntegerField(default=0)
    refreshed_at = models.DateTimeField(_("results updated"), null=True, blank=True)
    refresh_note = models.TextField(blank=True)

    class Meta:
        verbose_name = _("mailing")
        verbose_name_plural = _("mailings")
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["state", "send_at"], name="maillog_mailing_due")]
        permissions = [
            ("send_mailing", _("Can send mailings")),
            ("view_mailing_results", _("Can view mailing results")),
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def is_draft(self) -> bool:
        return self.state == MailingState.DRAFT

    @property
    def can_cancel(self) -> bool:
        return self.state in NOT_STARTED


class MailingList(ClusterableModel):
    """A named list of addresses: the simplest audience ("a list or segment")."""

    name = models.CharField(_("name"), max_length=255, unique=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("mailing list")
        verbose_name_plural = _("mailing lists")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MailingListMember(models.Model):
    """One address on a :class:`MailingList`."""

    # Indexed below together with the id: a mailing reads its list in pages by id.
    mailing_list = ParentalKey(
        MailingList, on_delete=models.CASCADE, related_name="entries", db_index=False
    )
    address = models.EmailField(_("address"), max_length=254)
    name = models.CharField(_("name"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("list member")
        verbose_name_plural = _("list members")
        constraints = [
            models.UniqueConstraint(
                fields=["mailing_list", "address"], name="maillog_list_member_unique"
            )
        ]
        # The pages of one list in id order (``keyset.pages``): an index range, whatever
        # the planner knows of the table. With the plain foreign-key index, PostgreSQL
        # read the whole list for each page of a freshly filled table.
        indexes = [models.Index(fields=["mailing_list", "id"], name="maillog_list_member_page")]

    def __str__(self) -> str:
        return self.address
