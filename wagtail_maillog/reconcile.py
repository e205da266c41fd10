"""Lost webhooks: nothing stays "sent" forever.

Every hour (the schedule "wagtail-maillog: reconcile lost webhooks"):

1. recipients the ESP accepted that have had no final status for
   ``RECONCILE_AFTER_HOURS`` are asked about, where the connector's ESP has a
   status API (see :mod:`wagtail_maillog.fetchers`); what it reports is
   stored like a webhook;
2. those still "queued" or "sent" after ``UNKNOWN_AFTER_HOURS`` become
   ``unknown``, with the reason. A late event still moves them on ("unknown"
   ranks below every ESP status);
3. recipients of a direct send (no outbox) still "sending" after
   ``SENDING_TIMEOUT_MINUTES`` were left by a process that stopped during the
   hand-over (a failure it lived through is recorded at once, see
   :func:`wagtail_maillog.recording.record_failure`): they become ``unknown``
   with the reason, and the message gets an "interrupted" attempt. The outbox
   has its own answer (the lease), so its mail is left alone.

Mail without an ESP message id (SMTP and other non-anymail backends) is left
alone: no ESP will ever report on it, so "sent" is all there is to know.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import status as rules
from .conf import get_setting
from .events import StatusChange, announce
from .models import Recipient, SendAttempt

logger = logging.getLogger(__name__)

TASK = "wagtail_maillog.reconcile.reconcile"
#: Waiting for an ESP event: "deferred" has its own limit (DEFERRED_BOUNCE_DAYS).
AWAITING = (rules.Status.QUEUED, rules.Status.SENT)
CHUNK = 1000


@dataclass
class ReconcileResult:
    asked: int = 0
    caught_up: int = 0
    unknown: int = 0
    abandoned: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        errors = f", errors: {self.errors}" if self.errors else ""
        abandoned = f", abandoned sends {self.abandoned}" if self.abandoned else ""
        return (
            f"asked {self.asked}, caught up {self.caught_up}, unknown {self.unknown}"
            f"{abandoned}{errors}"
        )


def stuck(older_than: timedelta) -> object:
    """Recipients the ESP took that have had no final status for ``older_than``."""
    limit = timezone.now() - older_than
    return (
        Recipient.objects.exclude(esp_message_id="")
        .filter(status__in=[*AWAITING, rules.Status.DEFERRED])
        .filter(status_at__lt=limit)
    )


def reconcile() -> str:
    """The hourly task: ask the ESPs, then give up on what is still silent."""
    result = ReconcileResult()
    ask_after = get_setting("RECONCILE_AFTER_HOURS")
    if ask_after is not None:
        from .fetchers import catch_up

        found = catch_up(stuck(timedelta(hours=ask_after)))
        result.asked, result.caught_up, result.errors = found.asked, found.changed, found.errors
    unknown_after = get_setting("UNKNOWN_AFTER_HOURS")
    if unknown_after is not None:
        result.unknown = mark_unknown(timedelta(hours=unknown_after))
    sending_timeout = get_setting("SENDING_TIMEOUT_MINUTES")
    if sending_timeout is not None:
        result.abandoned = resolve_abandoned(timedelta(minutes=sending_timeout))
    if result.errors:
        logger.warning("Reconciling lost webhooks: %s", result)
    return str(result)


def mark_unknown(older_than: timedelta) -> int:
    """Recipients still "queued"/"sent" after ``older_than`` become "unknown" (in chunks)."""
    hours = int(older_than.total_seconds() // 3600)
    reason = _(
        "No final status from the ESP within %(hours)d hours: its webhook may have been "
        "lost. A later event still updates it."
    ) % {"hours": hours}
    limit = timezone.now() - older_than
    marked = 0
    while True:
        with transaction.atomic():  # short transactions: the site keeps working
            rows = list(
                Recipient.objects.exclude(esp_message_id="")
                .filter(status__in=AWAITING, status_at__lt=limit)
                .order_by("pk")
                .values_list("pk", "address", "status")[:CHUNK]
            )
            if not rows:
                return marked
            now = timezone.now()
            Recipient.objects.filter(pk__in=[pk for pk, _a, _s in rows]).filter(
                status__in=AWAITING
            ).update(status=rules.Status.UNKNOWN, status_at=now, reason=reason)
            announce([StatusChange(pk, a, s, rules.Status.UNKNOWN, None, "") for pk, a, s in rows])
        marked += len(rows)


def resolve_abandoned(older_than: timedelta) -> int:
    """Direct sends still "sending" after ``older_than`` become "unknown" (in chunks).

    The process that sent them stopped between anymail's ``pre_send`` and the ESP's
    answer (killed, out of memory, a deploy): the ESP may or may not have the message.
    """
    minutes = int(older_than.total_seconds() // 60)
    reason = _(
        "The process sending this stopped before the ESP answered (for %(minutes)d "
        "minutes nothing was recorded): the ESP may or may not have accepted it."
    ) % {"minutes": minutes}
    limit = timezone.now() - older_than
    abandoned = Recipient.objects.filter(status=rules.Status.SENDING, esp_message_id="").filter(
        status_at__lt=limit, message__outbox__isnull=True
    )
    resolved = 0
    while True:
        with transaction.atomic():
            rows = list(abandoned.order_by("pk").values_list("pk", "address", "message_id")[:CHUNK])
            if not rows:
                return resolved
            now = timezone.now()
            Recipient.objects.filter(pk__in=[pk for pk, _a, _m in rows]).filter(
                status=rules.Status.SENDING
            ).update(status=rules.Status.UNKNOWN, status_at=now, reason=reason)
            SendAttempt.objects.bulk_create(
                SendAttempt(
                    message_id=m, at=now, outcome=SendAttempt.Outcome.INTERRUPTED, error=reason
                )
                for m in sorted({m for _pk, _a, m in rows})
            )
            announce(
                [
                    StatusChange(pk, a, rules.Status.SENDING, rules.Status.UNKNOWN, None, "")
                    for pk, a, _m in rows
                ]
            )
        resolved += len(rows)
