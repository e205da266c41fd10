"""Is each ESP's webhook reaching the site?

The usual reason a log says "Sent" for days is a webhook that never arrives: a
wrong URL, a wrong secret, an ESP where the webhook was never set up. Two signs
tell it, both cheap enough for the dashboard:

* **Silence** (:func:`silent`): of the last mails handed to an ESP more than
  ``WEBHOOK_SILENCE_HOURS`` ago (up to :data:`SAMPLE`, within a week), not one
  has had an event. A working webhook brings at least a "delivered" within
  minutes for nearly every mail.
* **Refused requests** (:func:`note_refused`, :func:`refused`): the webhook
  guard counts the requests it answers 400/413 per ESP, hour and reason
  (bad authentication or signature, malformed, too large).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from . import status as rules
from .conf import get_setting
from .models import Event, Message, Recipient, WebhookRejection

logger = logging.getLogger(__name__)

#: Mails looked at per ESP for :func:`silent` (the newest handed over before the limit).
SAMPLE = 200
#: Fewer mails than this say nothing (a site that sent three mails yesterday).
AT_LEAST = 5
#: Statuses of mail the ESP took but sent no event about yet.
NO_EVENT_YET = (rules.Status.SENT, rules.Status.QUEUED)
KEEP_DAYS = 7


@dataclass(frozen=True)
class Silence:
    esp_name: str
    mails: int  # looked at, none with an event
    since: datetime  # the oldest of them was handed over then


def silent(esp_name: str, now: datetime | None = None) -> Silence | None:
    """The ESP's last mails (handed over before the silence limit) all lack an event."""
    now = now or timezone.now()
    limit = now - timedelta(hours=get_setting("WEBHOOK_SILENCE_HOURS"))
    # The ESP's newest messages first, from the (esp_name, created_at) index: walking
    # the week's recipients and joining each to its message to find the ESP's read
    # every recipient of other ESPs (seconds per ESP at a million rows on SQLite).
    newest = (
        Message.objects.filter(
            esp_name=esp_name,
            created_at__lt=limit,
            created_at__gte=now - timedelta(days=KEEP_DAYS),
        )
        .order_by("-created_at")
        .values_list("pk", flat=True)[:SAMPLE]
    )
    rows = list(
        Recipient.objects.filter(
            message_id__in=list(newest),  # a list: MariaDB takes no LIMIT in an IN subquery
            esp_message_id__gt="",  # the ESP took it: it has the ESP's id
        )
        .order_by("-created_at")
        .values_list("status", "created_at")[:SAMPLE]
    )
    if len(rows) < AT_LEAST or any(status not in NO_EVENT_YET for status, _at in rows):
        return None
    return Silence(esp_name, len(rows), rows[-1][1])


@dataclass(frozen=True)
class Activity:
    last_event_at: datetime | None
    events: int  # in the last 24 hours (at most :data:`COUNT_CAP`)
    capped: bool


COUNT_CAP = 100_000


def activity(esp_name: str, now: datetime | None = None) -> Activity:
    """Events of the ESP received in the last 24 hours, and the newest one's time."""
    now = now or timezone.now()
    recent = Event.objects.filter(esp_name=esp_name, received_at__gte=now - timedelta(hours=24))
    count = recent.order_by()[: COUNT_CAP + 1].count()
    last = recent.aggregate(last=Max("received_at"))["last"]
    if last is None:  # quiet for a day: the newest ever (reads back along the index)
        newest = Event.objects.filter(esp_name=esp_name).order_by("-received_at").first()
        last = newest.received_at if newest else None
    return Activity(last, min(count, COUNT_CAP), count > COUNT_CAP)


def note_refused(esp_name: str, reason: str, now: datetime | None = None) -> None:
    """Count one refused webhook request. Never raises: the ESP gets its 4xx anyway."""
    hour = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    key = {"esp_name": esp_name[:64], "hour": hour, "reason": reason}
    try:
        with transaction.atomic():
            if not WebhookRejection.objects.filter(**key).update(count=F("count") + 1):
                try:
                    with transaction.atomic():
                        WebhookRejection.objects.create(**key, count=1)
                except IntegrityError:  # another request created it meanwhile
                    WebhookRejection.objects.filter(**key).update(count=F("count") + 1)
    except DatabaseError:
        logger.warning("Could not count a refused webhook request", exc_info=True)


def refused(esp_name: str, now: datetime | None = None) -> dict[str, int]:
    """Refused requests of the ESP in the last 24 hours, by reason."""
    return refused_by_esp(now).get(esp_name, {})


def refused_by_esp(now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Refused requests of every ESP in the last 24 hours, by reason: one query."""
    now = now or timezone.now()
    rows = (
        WebhookRejection.objects.filter(hour__gte=now - timedelta(hours=24))
        .values("esp_name", "reason")
        .annotate(n=Sum("count"))
    )
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["n"]:
            found.setdefault(row["esp_name"], {})[row["reason"]] = row["n"]
    return found


def forget_old(now: datetime | None = None) -> int:
    """Drop counters older than :data:`KEEP_DAYS` (the daily purge)."""
    since = (now or timezone.now()) - timedelta(days=KEEP_DAYS)
    return WebhookRejection.objects.filter(hour__lt=since).delete()[0]
