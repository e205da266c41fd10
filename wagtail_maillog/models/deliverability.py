"""The deliverability rollup: daily counts the deliverability page reads.

The mail log holds one row per recipient and one per event; a chart of 90 days
cannot read millions of them per page view. :class:`DailyCount` keeps, per day,
source, connector and recipient domain, how many recipients reached each
outcome. It is kept up to date by a scheduled task (``deliverability.rollup``)
and outlives the purge: counts carry no address.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

#: The counted outcomes, in the order of the page's series.
METRICS = (
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "complained",
    "unsubscribed",
    "opened",
    "clicked",
)


class DailyCount(models.Model):
    """Recipients who reached each outcome on ``day``, for one slice of the mail."""

    day = models.DateField(_("day"))
    source = models.CharField(_("sent from"), max_length=64, blank=True)
    connector = models.CharField(_("connector"), max_length=64, blank=True)
    esp_name = models.CharField(_("ESP"), max_length=64, blank=True)
    #: A mailbox provider's domain (DELIVERABILITY_DOMAINS), or "" for all others.
    domain = models.CharField(_("recipient domain"), max_length=254, blank=True)
    sent = models.PositiveIntegerField(_("sent"), default=0)
    delivered = models.PositiveIntegerField(_("delivered"), default=0)
    deferred = models.PositiveIntegerField(_("deferred"), default=0)
    bounced = models.PositiveIntegerField(_("bounced"), default=0)
    complained = models.PositiveIntegerField(_("complained"), default=0)
    unsubscribed = models.PositiveIntegerField(_("unsubscribed"), default=0)
    opened = models.PositiveIntegerField(_("opened"), default=0)
    clicked = models.PositiveIntegerField(_("clicked"), default=0)

    class Meta:
        verbose_name = _("daily delivery count")
        verbose_name_plural = _("daily delivery counts")
        constraints = [
            models.UniqueConstraint(
                fields=["day", "source", "connector", "esp_name", "domain"],
                name="maillog_daily_count",
            )
        ]
        permissions = [("view_deliverability", _("Can view deliverability"))]

    def __str__(self) -> str:
        return f"{self.day} {self.source or '-'} {self.connector or self.esp_name} {self.domain}"


class RollupState(models.Model):
    """Where the rollup's catch-up stands (one row).

    Events and send attempts are counted by id, in two steps: a run counts up to
    the highest id the *previous* run saw, so a row whose transaction committed
    late (its id taken before a newer one that committed first) is not skipped.
    Attempts still in progress hold the attempt mark back until they end.
    """

    event_mark = models.BigIntegerField(default=0)
    event_horizon = models.BigIntegerField(default=0)
    attempt_mark = models.BigIntegerField(default=0)
    attempt_horizon = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)
    #: The thresholds crossed at the last check: {key: level}, so
    #: ``threshold_crossed`` is sent once per crossing, not on every run.
    crossed = models.JSONField(default=dict, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"rollup: events to {self.event_mark}, attempts to {self.attempt_mark}"
