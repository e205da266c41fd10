"""The outbox: mail waiting to leave, or that failed to.

The truth about sending lives here, not in django-q2 (whose Redis broker has
no delivery receipts): state, attempts, next attempt and a lease. django-q2
only wakes the workers. A row exists only while the mail is in the outbox;
once handed to the ESP it is deleted, and with it the payload (so
attachments are never kept after a message leaves).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .messages import Message


class SendState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SCHEDULED = "scheduled", _("Scheduled")
    RETRY_PENDING = "retry_pending", _("Retry pending")
    SENDING = "sending", _("Sending")
    FAILED = "failed", _("Failed")
    CONNECTOR_DISABLED = "connector_disabled", _("Connector disabled")


#: States a worker may pick up once ``next_attempt_at`` has come.
WAITING = (SendState.QUEUED, SendState.SCHEDULED, SendState.RETRY_PENDING)
#: States from which a person may cancel (everything but a hand-over in progress).
CANCELLABLE_STATES = (*WAITING, SendState.FAILED, SendState.CONNECTOR_DISABLED)


class OutboxItem(models.Model):
    """One message in the outbox, with everything needed to send it later."""

    message = models.OneToOneField(
        Message, verbose_name=_("email"), on_delete=models.CASCADE, related_name="outbox"
    )
    connector = models.CharField(_("connector"), max_length=64)
    state = models.CharField(
        _("send state"), max_length=20, choices=SendState.choices, default=SendState.QUEUED
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    last_error = models.TextField(_("last failure message"), blank=True)
    first_failure_at = models.DateTimeField(_("registered"), null=True, blank=True)
    auto_retry = models.BooleanField(
        _("automatic retry"),
        default=True,
        help_text=_("Off once the retry schedule is used up: only a manual retry sends it."),
    )
    lease_owner = models.CharField(max_length=36, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    payload = models.BinaryField()
    payload_mac = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("outbox item")
        verbose_name_plural = _("outbox")
        # No index on ``connector`` (dropped in 0018): every queued mail wrote an entry
        # into it, only for the connectors page's counts (a scan of the outbox, which
        # holds only what is not sent yet), and the claim must not read through it.
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="maillog_outbox_due"),
        ]
        permissions = [
            ("retry_outboxitem", _("Can retry mail in the outbox")),
            ("cancel_outboxitem", _("Can cancel mail in the outbox")),
            ("manage_connectors", _("Can enable and disable connectors")),
            ("lead_team", _("Is a team lead (sees the team's outbox first)")),
        ]

    def __str__(self) -> str:
        return str(self.message)


class ConnectorState(models.Model):
    """A connector switched off (or on again) in the admin, over its setting."""

    name = models.CharField(_("connector"), max_length=64, unique=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    changed_at = models.DateTimeField(_("changed"), default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("connector state")
        verbose_name_plural = _("connector states")

    def __str__(self) -> str:
        return self.name


class OutboxPreference(models.Model):
    """How a user last looked at the outbox, kept across logins."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="maillog_outbox_pref"
    )
    view = models.CharField(max_length=16, blank=True)
    page_size = models.PositiveSmallIntegerField(default=25)
    columns = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.view})"
