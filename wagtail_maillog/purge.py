"""Retention: delete history older than ``RETENTION_DAYS``, in small batches.

Each batch is its own short transaction, so the site keeps working while a
large purge runs. ``PURGE_MODE`` decides what goes:

* ``"messages"`` (default): the message with its recipients, events and attempts;
* ``"events"``: only the event history, raw payloads and bodies; message and
  recipient rows (with their final status) stay for statistics.

Orphan events (never matched to a message) older than the limit always go.

Each table is emptied of a batch with one statement (``_delete``), not through
Django's deletion collector, which loads the rows and deletes them 100 at a
time: a batch costs the same few statements for 10 messages as for 1,000.
No model of this package has delete signals; the rows that point at what is
deleted are handled here one by one (``POINTING_AT_MESSAGES``, checked by a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .conf import get_setting
from .models import AddressChange, Event, Message, OutboxItem, Recipient, SendAttempt
from .webhook_health import forget_old

#: Every foreign key to a message, recipient or event, as (model, field): what a
#: batch of :func:`purge` deletes or unlinks besides the messages themselves.
POINTING_AT_MESSAGES = {
    (Event, "recipient"),
    (Recipient, "message"),
    (SendAttempt, "message"),
    (OutboxItem, "message"),
    (Message, "resent_from"),
    (AddressChange, "recipient"),
}


@dataclass
class PurgeResult:
    messages: int = 0
    events: int = 0
    batches: int = 0


def cutoff(days: int | None = None) -> datetime | None:
    days = get_setting("RETENTION_DAYS") if days is None else days
    if days is None:
        return None
    return timezone.now() - timedelta(days=days)


def purge(
    before: datetime | None = None,
    batch_size: int = 1000,
    mode: str | None = None,
    dry_run: bool = False,
) -> PurgeResult:
    """Delete history older than ``before`` (default: the retention setting)."""
    before = before or cutoff()
    result = PurgeResult()
    if before is None:
        return result
    mode = mode or get_setting("PURGE_MODE")
    # Mail still waiting in the outbox (scheduled far ahead, or failed) is kept.
    old = Message.objects.filter(created_at__lt=before, outbox__isnull=True)
    if mode == "events":
        old = old.filter(body_stored=True) | old.filter(recipients__events__isnull=False)
        old = old.distinct()
    if dry_run:
        result.messages = old.count()
        result.events = Event.objects.filter(recipient__message__created_at__lt=before).count()
        result.events += Event.objects.filter(
            recipient__isnull=True, received_at__lt=before
        ).count()
        return result

    while True:
        ids = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            result.events += _delete(Event.objects.filter(recipient__message_id__in=ids))
            if mode == "events":
                Message.objects.filter(pk__in=ids).update(
                    body_text="", body_html="", body_stored=False
                )
            else:
                result.messages += _delete_messages(ids)
        result.batches += 1
        if mode == "events":
            result.messages += len(ids)

    while True:
        ids = list(
            Event.objects.filter(recipient__isnull=True, received_at__lt=before)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        result.events += _delete(Event.objects.filter(pk__in=ids))
        result.batches += 1
    return result


def _delete(queryset: QuerySet[Any]) -> int:
    """Delete the rows of ``queryset`` in one statement (no collector, no signals)."""
    return queryset._raw_delete(queryset.db)


def _delete_messages(ids: list[int]) -> int:
    """Delete messages ``ids`` and what points at them (their events are gone already)."""
    AddressChange.objects.filter(recipient__message_id__in=ids).update(recipient=None)
    _delete(Recipient.objects.filter(message_id__in=ids))
    _delete(SendAttempt.objects.filter(message_id__in=ids))
    _delete(OutboxItem.objects.filter(message_id__in=ids))
    _unlink_resends(ids)
    return _delete(Message.objects.filter(pk__in=ids))


def _unlink_resends(ids: list[int]) -> None:
    """Newer resends of these messages lose their "Resend of" link.

    MariaDB/MySQL estimate an ``IN`` of more than ``eq_range_index_dive_limit``
    (200) values from the index's statistics, and on this mostly-NULL column
    every value seems to match every row: they scanned the whole message table
    for each batch (a purge quadratic in the log's size). With the limit off for
    this one statement they look each value up in the index (100 ms -> 3 ms per
    batch at 300,000 messages).
    """
    queryset = Message.objects.filter(resent_from_id__in=ids)
    connection = connections[queryset.db]
    if connection.vendor != "mysql":
        queryset.update(resent_from=None)
        return
    quote = connection.ops.quote_name
    table, column = quote(Message._meta.db_table), quote("resent_from_id")
    sql = f"UPDATE {table} SET {column} = NULL WHERE {column} IN ({', '.join(['%s'] * len(ids))})"
    if connection.mysql_is_mariadb:
        sql = f"SET STATEMENT eq_range_index_dive_limit = 0 FOR {sql}"
    else:  # MySQL 8: the same as an optimizer hint
        sql = sql.replace("UPDATE", "UPDATE /*+ SET_VAR(eq_range_index_dive_limit = 0) */", 1)
    with connection.cursor() as cursor:
        cursor.execute(sql, ids)


def purge_expired() -> str:
    """The daily django-q2 task (also drops week-old counts of refused webhooks)."""
    result = purge()
    forget_old()
    return f"purged {result.messages} messages, {result.events} events"
