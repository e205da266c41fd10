"""A batch whose hand-over was interrupted (the worker died while the ESP held it).

Sending it again blindly would mail every member twice if the ESP took it. Where
the connector's ESP can say which of the batch it accepted (a status fetcher with
:meth:`~wagtail_maillog.fetchers.base.StatusFetcher.accepted`: Mailgun's events
API), those recipients are recorded as handed over with the ESP's message id,
and only the others are handed over again. Where it cannot, the worker holds the
batch for a person (``worker._hold``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from .. import status as rules
from ..addresses import normalize
from ..bulk import update_fields
from ..events import attach_orphans
from ..fetchers import fetcher_for
from ..models import Message, OutboxItem, Recipient, SendAttempt

logger = logging.getLogger(__name__)

#: Clocks of the worker and the ESP may differ: the window asked about is this much wider.
CLOCK_SKEW = timedelta(minutes=2)


def accepted_by_esp(item: OutboxItem, now: datetime) -> dict[str, str] | None:
    """{address: ESP message id} of the batch's recipients the ESP accepted during the
    interrupted hand-over; None when nobody can tell (no fetcher, or it failed)."""
    fetcher = fetcher_for(item.connector)
    started = (
        SendAttempt.objects.filter(
            message_id=item.message_id, outcome=SendAttempt.Outcome.INTERRUPTED
        )
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    if fetcher is None or started is None:
        return None
    addresses = list(
        Recipient.objects.filter(message_id=item.message_id).values_list("address", flat=True)
    )
    sender = Message.objects.filter(pk=item.message_id).values_list("from_email", flat=True)
    try:
        with fetcher:
            return fetcher.accepted(
                addresses,
                from_email=sender.first() or "",
                since=started - CLOCK_SKEW,
                until=now + CLOCK_SKEW,
            )
    except Exception:  # the ESP's API failed: a person decides instead
        logger.warning("Could not ask the ESP about interrupted batch %s", item.pk, exc_info=True)
        return None


def record_accepted(item: OutboxItem, accepted: dict[str, str], now: datetime) -> None:
    """The recipients the ESP took: "sent" with its message id; events that came for
    them meanwhile (orphans) find them. Those it had taken before keep what they have."""
    reason = _("The ESP had taken it when the worker stopped (found in the ESP's event log).")
    with transaction.atomic():
        recipients = list(Recipient.objects.filter(message_id=item.message_id))
        touched = []
        for recipient in recipients:
            esp_id = accepted.get(recipient.address)
            if esp_id is None or recipient.status in rules.FINAL or recipient.esp_message_id:
                continue
            recipient.esp_message_id, recipient.status = esp_id[:255], rules.Status.SENT
            recipient.status_at, recipient.reason = now, reason
            touched.append(recipient)
        if touched:  # a batch has hundreds: one UPDATE, not one per recipient
            update_fields(touched, ["esp_message_id", "status", "status_at", "reason"])
            attach_orphans(touched)
            # The hand-over the ESP's log revealed, as an attempt of its own: the
            # message's history and the deliverability figures count these as sent.
            SendAttempt.objects.create(
                message_id=item.message_id,
                at=now,
                outcome=SendAttempt.Outcome.SENT,
                connector=item.connector[:64],
                error=reason,
                response={
                    r.address: {"message_id": r.esp_message_id, "status": "sent"} for r in touched
                },
            )


def drop_recipients(message: Any, addresses: set[str]) -> None:
    """Take ``addresses`` (and their merge data) off an ``EmailMessage`` before it goes."""

    def keep(values: Any) -> list[Any]:
        return [v for v in values or [] if normalize(parseaddr(str(v))[1]) not in addresses]

    message.to, message.cc, message.bcc = keep(message.to), keep(message.cc), keep(message.bcc)
    for name in ("merge_data", "merge_metadata", "merge_headers"):
        values = getattr(message, name, None)
        if isinstance(values, dict):
            setattr(
                message, name, {k: v for k, v in values.items() if normalize(k) not in addresses}
            )
