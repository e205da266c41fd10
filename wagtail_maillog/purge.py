"""Retention: delete history older than ``RETENTION_DAYS``, in small batches.

Each batch is its own short transaction, so the site keeps working while a
large purge runs. ``PURGE_MODE`` decides what goes:

* ``"messages"`` (default): the message with its recipients, events and attempts;
* ``"events"``: only the event history, raw payloads and bodies; message and
  recipient rows (with their final status) stay for statistics.

Orphan events (never matched to a message) older than the limit always go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from .conf import get_setting
from .models import Event, Message, Recipient, SendAttempt


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
        # .only("pk"): deleting goes through Django's collector (cascades, signals),
        # which otherwise loads every column of every row (bodies, JSON) it deletes.
        with transaction.atomic():
            deleted, _ = Event.objects.filter(recipient__message_id__in=ids).only("pk").delete()
            result.events += deleted
            if mode == "events":
                Message.objects.filter(pk__in=ids).update(
                    body_text="", body_html="", body_stored=False
                )
            else:
                Recipient.objects.filter(message_id__in=ids).only("pk").delete()
                SendAttempt.objects.filter(message_id__in=ids).only("pk").delete()
                Message.objects.filter(resent_from_id__in=ids).update(resent_from=None)
                result.messages += Message.objects.filter(pk__in=ids).only("pk").delete()[0]
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
        result.events += Event.objects.filter(pk__in=ids).only("pk").delete()[0]
        result.batches += 1
    return result


def purge_expired() -> str:
    """The daily django-q2 task."""
    result = purge()
    return f"purged {result.messages} messages, {result.events} events"
