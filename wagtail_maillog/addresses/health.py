"""Moving address statuses: from delivery events, by people, and by time.

All writes are set-based: a webhook batch that bounces 1,000 addresses costs
a few queries, not thousands.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import status as rules
from ..bulk import filter_in, update_fields
from ..conf import get_setting
from ..events import StatusChange, announce
from ..models import Address, AddressChange, AddressStatus, Recipient
from ..models.addresses import PROBLEMS
from . import normalize

#: Recipient status (from an ESP event) -> the problem it means for the address.
PROBLEM_FOR_STATUS = {
    rules.Status.BOUNCED: AddressStatus.BOUNCED,
    rules.Status.INVALID: AddressStatus.INVALID,
    rules.Status.COMPLAINED: AddressStatus.SPAM,
    rules.Status.UNSUBSCRIBED: AddressStatus.UNSUBSCRIBED,
    rules.Status.REJECTED: AddressStatus.BLOCKED,
}

#: The history line of an address that a message event moved to a problem status.
CAUSE_FOR_STATUS = {
    rules.Status.BOUNCED: gettext_lazy("A message to this address bounced."),
    rules.Status.INVALID: gettext_lazy(
        "A message to this address bounced: the address does not exist."
    ),
    rules.Status.COMPLAINED: gettext_lazy("The recipient marked a message as spam."),
    rules.Status.UNSUBSCRIBED: gettext_lazy("The recipient unsubscribed."),
    rules.Status.REJECTED: gettext_lazy("The ESP rejected a message to this address."),
}


def ensure(addresses: Iterable[str]) -> dict[str, Address]:
    """The Address rows of these addresses, created (unconfirmed) where missing."""
    wanted = {normalize(a) for a in addresses if a and "@" in a}
    found = {a.address: a for a in Address.objects.filter(address__in=wanted)}
    missing = [Address(address=a) for a in sorted(wanted - set(found))]
    if missing:
        Address.objects.bulk_create(missing, ignore_conflicts=True)
        found.update({a.address: a for a in Address.objects.filter(address__in=wanted)})
    return found


def lock(addresses: Iterable[str]) -> None:
    """PostgreSQL: lock these (existing) address rows in address order, until commit.

    Webhooks update addresses inside the transaction that stores their events;
    two of them touching the same addresses in different orders could deadlock.
    One order for everyone cannot. (SQLite has one writer at a time anyway.)
    """
    from django.db import connection

    wanted = sorted({normalize(a) for a in addresses if a})
    if not wanted or connection.vendor != "postgresql":
        return
    locked = Address.objects.select_for_update(no_key=True).order_by("address")
    for rows in filter_in(locked, "address", wanted):
        list(rows.values_list("pk", flat=True))


def set_status(
    changes: Iterable[tuple[str, str, str]],
    user: Any = None,
    recipient_ids: dict[str, int] | None = None,
    locked: bool = False,
) -> int:
    """Apply (address, new status, cause) triples; returns how many addresses changed.

    ``locked``: the caller already holds the locks of these addresses (:func:`lock`).
    """
    changes = list(changes)
    if not changes:
        return 0
    now = timezone.now()
    with transaction.atomic():
        if not locked:
            lock(a for a, _s, _c in changes)
        rows = ensure(a for a, _s, _c in changes)
        history, touched = [], {}
        for address, new, cause in changes:
            row = rows[normalize(address)]
            if row.status == new:
                continue
            history.append(
                AddressChange(
                    address=row,
                    at=now,
                    old=row.status,
                    new=new,
                    cause=cause,
                    user=user,
                    recipient_id=(recipient_ids or {}).get(row.address),
                )
            )
            row.status, row.status_at, row.reason = new, now, cause
            if new == AddressStatus.CONFIRMED:
                row.confirmed_at = now
            if new in PROBLEMS:
                row.nonce = ""  # a link sent before the problem must not confirm it
            touched[row.pk] = row
        update_fields(
            list(touched.values()), ["status", "status_at", "reason", "confirmed_at", "nonce"]
        )
        AddressChange.objects.bulk_create(history)
    return len(touched)


def on_status_changed(sender: Any, changes: list[Any], **kwargs: Any) -> None:
    """Status changes -> address health: a bounce, complaint, unsubscribe or reject marks
    the address (``signals.status_changing``: in the transaction storing the changes)."""
    if not changes:
        return
    seen = {normalize(c.address) for c in changes}
    lock(seen)
    triples, recipients = [], {}
    for change in changes:
        problem = PROBLEM_FOR_STATUS.get(change.new)
        if problem is None:
            continue
        cause = str(CAUSE_FOR_STATUS[change.new])
        triples.append((change.address, problem, cause))
        recipients[normalize(change.address)] = change.recipient_id
    set_status(triples, recipient_ids=recipients, locked=True)
    now = timezone.now()
    for addresses in filter_in(Address.objects.all(), "address", sorted(seen)):
        addresses.update(last_event_at=now)


def clear_problem(addresses: Iterable[Address], user: Any = None) -> int:
    """After the member fixed it: back to unconfirmed (the problem stays in history)."""
    cause = _("Problem cleared by %(user)s") % {"user": user} if user else _("Problem cleared")
    return set_status(
        ((a.address, AddressStatus.UNCONFIRMED, cause) for a in addresses if a.has_problem),
        user=user,
    )


def expire_deferred(days: int | None = None) -> int:
    """Deferred mail with no final event after ``DEFERRED_BOUNCE_DAYS`` counts as bounced."""
    days = get_setting("DEFERRED_BOUNCE_DAYS") if days is None else days
    limit = timezone.now() - timedelta(days=days)
    stale = list(
        Recipient.objects.filter(status=rules.Status.DEFERRED, status_at__lt=limit).only(
            "pk", "address", "status"
        )[:5000]
    )
    if not stale:
        return 0
    reason = _("Deferred for more than %(days)d days without delivery.") % {"days": days}
    now = timezone.now()
    with transaction.atomic():
        Recipient.objects.filter(pk__in=[r.pk for r in stale]).update(
            status=rules.Status.BOUNCED, status_at=now, reason=reason
        )
        announce(
            [
                StatusChange(r.pk, r.address, rules.Status.DEFERRED, rules.Status.BOUNCED, None, "")
                for r in stale
            ]
        )
    return len(stale)
