"""The status rules of a recipient, in one place.

Pure code, no database: every other module asks this one what a status means
and whether an event may change it.

ESPs retry webhooks and deliver them out of order, so the current status is not
"the newest event" but "the most advanced one": each status has a *rank*, and
an event only moves a recipient to a status of higher rank. Consequences:

* a late ``delivered`` never overwrites ``opened`` or ``clicked``;
* ``bounced`` after ``deferred`` is final (a later ``deferred`` is ignored);
* a failure (bounced, invalid, rejected, blocked, failed) beats delivery and
  engagement: an asynchronous bounce can arrive after "delivered";
* what the recipient did (complained, unsubscribed) beats everything;
* between two statuses of the same rank, the newer event wins.

Our own actions (retry, cancel) are not events: they set the status with
``force`` through :func:`transition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    NONE = "none", _("None")
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    UNKNOWN = "unknown", _("Unknown")
    QUEUED = "queued", _("Queued")
    SENT = "sent", _("Sent")
    DEFERRED = "deferred", _("Deferred")
    DELIVERED = "delivered", _("Delivered")
    OPENED = "opened", _("Opened")
    CLICKED = "clicked", _("Clicked")
    BOUNCED = "bounced", _("Bounced")
    INVALID = "invalid", _("Invalid address")
    REJECTED = "rejected", _("Rejected")
    BLOCKED = "blocked", _("Blocked")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    COMPLAINED = "complained", _("Complained (spam)")
    UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")


RANK: dict[str, int] = {
    Status.NONE: 0,
    Status.PENDING: 10,
    Status.SENDING: 20,
    Status.UNKNOWN: 25,
    Status.QUEUED: 30,
    Status.SENT: 40,
    Status.DEFERRED: 50,
    Status.DELIVERED: 60,
    Status.OPENED: 70,
    Status.CLICKED: 80,
    Status.BOUNCED: 90,
    Status.INVALID: 90,
    Status.REJECTED: 90,
    Status.BLOCKED: 90,
    Status.FAILED: 90,
    Status.CANCELLED: 90,
    Status.COMPLAINED: 100,
    Status.UNSUBSCRIBED: 100,
}

#: Nothing more is expected for the recipient (used by reconciliation and the UI).
FINAL = frozenset(
    {
        Status.DELIVERED,
        Status.OPENED,
        Status.CLICKED,
        Status.BOUNCED,
        Status.INVALID,
        Status.REJECTED,
        Status.BLOCKED,
        Status.FAILED,
        Status.CANCELLED,
        Status.COMPLAINED,
        Status.UNSUBSCRIBED,
    }
)
#: The mail did not reach the recipient (shown in red, counted as a problem).
FAILURES = frozenset(
    {
        Status.BOUNCED,
        Status.INVALID,
        Status.REJECTED,
        Status.BLOCKED,
        Status.FAILED,
        Status.COMPLAINED,
        Status.UNSUBSCRIBED,
    }
)
#: The mail never reached the mailbox: the mail log's "Not delivered" filter (seed 002's
#: "delivery failed"). Complained and unsubscribed are not here: that mail arrived.
NOT_DELIVERED = frozenset(
    {
        Status.BOUNCED,
        Status.INVALID,
        Status.REJECTED,
        Status.BLOCKED,
        Status.FAILED,
        Status.CANCELLED,
    }
)
#: Still in our hands: may be cancelled.
CANCELLABLE = frozenset({Status.PENDING})
#: Evidence that the mail was displayed. Not proof that a person read it:
#: image proxies and push notifications load the tracking pixel too.
ENGAGED = frozenset({Status.OPENED, Status.CLICKED})

OPENED_CAVEAT = _(
    "Opened means the tracking image was loaded. Image proxies and push "
    "notifications can load it without a person reading the mail, so it is "
    "never proof that the mail was read."
)

#: Seed 002's caveat: the receiving server accepted the mail; where it filed it is not told.
DELIVERED_CAVEAT = _(
    "Delivered means the recipient's mail server accepted the mail. It may still "
    "have been filed as spam or in another automatically sorted folder."
)


def status_for_event(event_type: str, reject_reason: str | None = None) -> str | None:
    """Map an anymail ``EventType`` (and ``RejectReason``) to a status.

    Returns None for events that are history only (``subscribed``,
    ``unknown``, inbound events): they are stored but move nothing.
    """
    if event_type in (Status.BOUNCED, Status.REJECTED) and reject_reason == "invalid":
        return Status.INVALID
    if event_type == "autoresponded":
        return Status.DELIVERED  # an auto-reply proves the mailbox got it
    if event_type in (
        Status.QUEUED,
        Status.SENT,
        Status.DEFERRED,
        Status.DELIVERED,
        Status.OPENED,
        Status.CLICKED,
        Status.BOUNCED,
        Status.REJECTED,
        Status.FAILED,
        Status.COMPLAINED,
        Status.UNSUBSCRIBED,
    ):
        return Status(event_type)
    return None


def status_for_send_result(anymail_status: str | None) -> str:
    """Map anymail's per-recipient send status (``AnymailRecipientStatus``)."""
    mapping = {
        "sent": Status.SENT,
        "queued": Status.QUEUED,
        "invalid": Status.INVALID,
        "rejected": Status.REJECTED,
        "failed": Status.FAILED,
    }
    return mapping.get(anymail_status or "", Status.UNKNOWN)


@dataclass(frozen=True)
class Current:
    """A recipient's status and when it was reached."""

    status: str
    at: datetime | None


def wins(current: Current, new_status: str, new_at: datetime | None) -> bool:
    """Whether an event reporting ``new_status`` at ``new_at`` replaces ``current``."""
    if new_status == current.status:
        return False
    new_rank, old_rank = RANK[new_status], RANK[current.status]
    if new_rank != old_rank:
        return new_rank > old_rank
    if current.at is None or new_at is None or new_at == current.at:
        # No order to go by: pick one deterministically, so replays agree.
        return current.at is None or new_status > current.status
    return new_at > current.at


#: Ranks that several statuses share: between them the newer event wins.
SHARED_RANKS = frozenset(rank for rank in RANK.values() if list(RANK.values()).count(rank) > 1)


def transition(
    current: Current, new_status: str, new_at: datetime | None, *, force: bool = False
) -> Current:
    """The status after an event (or, with ``force``, after an action of ours)."""
    if force or wins(current, new_status, new_at):
        return Current(new_status, new_at)
    if new_status == current.status and new_at is not None:
        # The same status again: only its time can move. Where another status of
        # the same rank can still win by being newer, the time compared with must
        # be the newest report of this status, or the order of arrival would
        # decide (bounced 10:00, invalid 10:05, bounced 10:10 is "bounced" in any
        # order). Elsewhere it stays when the status was first reached.
        if current.at is None:
            return Current(new_status, new_at)
        if RANK[new_status] in SHARED_RANKS:
            return Current(new_status, max(current.at, new_at))
        return Current(new_status, min(current.at, new_at))
    return current


def fold(current: Current, changes: list[tuple[str, datetime | None]]) -> Current:
    """Apply many (status, time) changes in any order; the result is order-free."""
    for new_status, new_at in changes:
        current = transition(current, new_status, new_at)
    return current
