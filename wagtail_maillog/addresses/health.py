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
from ..models.addresses import PROBLEM_FOR_STATUS, PROBLEMS
from . import normalize

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


def ensure(addresses: Iterable[str], lock: bool = False) -> dict[str, Address]:
    """The Address rows of these addresses, created (unconfirmed) where missing.

    ``lock``: PostgreSQL: locked in address order, as :func:`lock` does, by the same
    SELECT (one statement fewer than :func:`lock` and then this).
    """
    from django.db import connection

    wanted = {normalize(a) for a in addresses if a and "@" in a}
    rows = Address.objects.filter(address__in=wanted)
    if lock and connection.vendor == "postgresql":
        rows = rows.select_for_update(no_key=True).order_by("address")
    found = {a.address: a for a in rows}
    missing = [Address(address=a) for a in sorted(wanted - set(found))]
    if missing:
        Address.objects.bulk_create(missing, ignore_conflicts=True)
        found.update({a.address: a for a in rows.all()})
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
    last_event_at: Any = None,
) -> int:
    """Apply (address, new status, cause) triples; returns how many addresses changed.

    ``locked``: the caller already holds the locks of these addresses (:func:`lock`).
    ``last_event_at``: also set on every address of ``changes`` (a message event's
    change), in the same UPDATE.
    """
    changes = list(changes)
    if not changes:
        return 0
    now = timezone.now()
    with transaction.atomic():
        rows = ensure((a for a, _s, _c in changes), lock=not locked)
        history, touched, moved = [], {}, set()
        for address, new, cause in changes:
            row = rows[normalize(address)]
            if last_event_at is not None:
                row.last_event_at = last_event_at
                touched[row.pk] = row
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
            moved.add(row.pk)
        fields = ["status", "status_at", "reason", "confirmed_at", "nonce"]
        update_fields(
            list(touched.values()), fields if last_event_at is None else [*fields, "last_event_at"]
        )
        AddressChange.objects.bulk_create(history)
    return len(moved)


def on_status_changed(
    sender: Any, changes: list[Any], last_event_stored: bool = False, **kwargs: Any
) -> None:
    """Status changes -> address health: a bounce, complaint, unsubscribe or reject marks
    the address (``signals.status_changing``: in the transaction storing the changes),
    and ``last_event_at`` moves.

    The address a change marks gets its ``last_event_at`` in the UPDATE of its status.
    ``last_event_stored``: the sender already moved the ``last_event_at`` of the other
    addresses (the one-event webhook path folds it into its own statements, see
    :func:`marks_address`), so a change that marks no address costs no statement here.
    """
    if not changes:
        return
    seen = {normalize(c.address) for c in changes}
    if not last_event_stored:
        lock(seen)  # every address of the batch, in one order, before any is written
    triples, recipients = [], {}
    for change in changes:
        if not marks_address(change.new):
            continue
        cause = str(CAUSE_FOR_STATUS[change.new])
        triples.append((change.address, PROBLEM_FOR_STATUS[change.new], cause))
        recipients[normalize(change.address)] = change.recipient_id
    now = timezone.now()
    set_status(triples, recipient_ids=recipients, locked=not last_event_stored, last_event_at=now)
    rest = set() if last_event_stored else seen - {normalize(a) for a, _s, _c in triples}
    for addresses in filter_in(Address.objects.all(), "address", sorted(rest)):
        addresses.update(last_event_at=now)


def marks_address(status: str) -> bool:
    """Whether a recipient's new ``status`` gives its address a problem status."""
    return status in PROBLEM_FOR_STATUS


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
