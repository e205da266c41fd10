"""The health of each address: confirmed or not, and whether mail to it works.

One row per normalised address (see :func:`wagtail_maillog.addresses.normalize`),
whoever's address it is; every change is kept in :class:`AddressChange`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..status import Status


class AddressStatus(models.TextChoices):
    UNCONFIRMED = "unconfirmed", _("Unconfirmed")
    REQUESTED = "requested", _("Confirmation requested")
    CONFIRMED = "confirmed", _("Confirmed")
    BOUNCED = "bounced", _("Problem (bounced)")
    SPAM = "spam", _("Problem (spam)")
    UNSUBSCRIBED = "unsubscribed", _("Problem (unsubscribed)")
    BLOCKED = "blocked", _("Problem (blocked)")
    INVALID = "invalid", _("Problem (invalid address)")


#: Mail to an address with one of these is not sent (recorded as blocked).
PROBLEMS = frozenset(
    {
        AddressStatus.BOUNCED,
        AddressStatus.SPAM,
        AddressStatus.UNSUBSCRIBED,
        AddressStatus.BLOCKED,
        AddressStatus.INVALID,
    }
)


#: Recipient status (from an ESP event) -> the problem it means for the address.
PROBLEM_FOR_STATUS = {
    Status.BOUNCED: AddressStatus.BOUNCED,
    Status.INVALID: AddressStatus.INVALID,
    Status.COMPLAINED: AddressStatus.SPAM,
    Status.UNSUBSCRIBED: AddressStatus.UNSUBSCRIBED,
    Status.REJECTED: AddressStatus.BLOCKED,
}


class Address(models.Model):
    address = models.CharField(_("address"), max_length=254, unique=True)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=AddressStatus.choices,
        default=AddressStatus.UNCONFIRMED,
    )
    status_at = models.DateTimeField(_("since"), default=timezone.now)
    reason = models.TextField(_("reason"), blank=True)
    last_event_at = models.DateTimeField(_("last event"), null=True, blank=True)
    requested_at = models.DateTimeField(_("confirmation requested"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("confirmed"), null=True, blank=True)
    #: Secret part of the confirmation link; a new request (or a use) replaces it.
    nonce = models.CharField(max_length=32, blank=True)

    class Meta:
        verbose_name = _("address")
        verbose_name_plural = _("addresses")
        indexes = [models.Index(fields=["status", "status_at"], name="maillog_addr_status")]
        permissions = [("manage_addresses", _("Can manage member addresses"))]

    def __str__(self) -> str:
        return self.address

    @property
    def has_problem(self) -> bool:
        return self.status in PROBLEMS


class AddressChange(models.Model):
    """One change of an address's status, and what caused it."""

    address = models.ForeignKey(Address, on_delete=models.CASCADE, related_name="changes")
    at = models.DateTimeField(_("time"), default=timezone.now)
    old = models.CharField(_("from"), max_length=16, choices=AddressStatus.choices, blank=True)
    new = models.CharField(_("to"), max_length=16, choices=AddressStatus.choices)
    cause = models.TextField(_("cause"), blank=True)
    recipient = models.ForeignKey(
        "wagtail_maillog.Recipient",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = _("address change")
        verbose_name_plural = _("address changes")
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.address}: {self.old} → {self.new}"
