"""How a mailing is doing: counts per status, progress, and "update results".

Counting is one grouped query over the mailing's recipients, whatever their
number. "Update results" runs in django-q2 (:func:`refresh`): it asks the
ESP's status API about recipients that have no final status yet (where a
fetcher exists for the connector), so results lost with a webhook are caught
up, and reports its progress on the mailing row for the page to poll.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Exists, Max, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import status as rules
from .. import tasks
from ..models import Mailing, MailingState, OutboxItem, Recipient, SendAttempt, SendState

logger = logging.getLogger(__name__)

TASK = "wagtail_maillog.mailings.results.refresh"
#: Not handed over yet.
WAITING = frozenset({rules.Status.NONE, rules.Status.PENDING, rules.Status.SENDING})
#: Never reached the ESP (yet).
NOT_GONE = WAITING | {rules.Status.CANCELLED, rules.Status.FAILED, rules.Status.BLOCKED}
#: Shown in this order on the progress page (others follow).
ORDER = [
    rules.Status.PENDING,
    rules.Status.SENDING,
    rules.Status.QUEUED,
    rules.Status.SENT,
    rules.Status.DEFERRED,
    rules.Status.DELIVERED,
    rules.Status.OPENED,
    rules.Status.CLICKED,
    rules.Status.BOUNCED,
    rules.Status.INVALID,
    rules.Status.COMPLAINED,
    rules.Status.UNSUBSCRIBED,
    rules.Status.REJECTED,
    rules.Status.BLOCKED,
    rules.Status.FAILED,
    rules.Status.CANCELLED,
    rules.Status.UNKNOWN,
]


def recipients_of(mailing: Mailing) -> Any:
    """The log rows of a mailing's recipients."""
    ct = ContentType.objects.get_for_model(Mailing)
    return Recipient.objects.filter(message__content_type=ct, message__object_id=str(mailing.pk))


def outbox_items_of(mailing: Mailing, items: Any = None) -> Any:
    """The outbox items of a mailing's mail (among ``items``, default all)."""
    ct = ContentType.objects.get_for_model(Mailing)
    return (OutboxItem.objects.all() if items is None else items).filter(
        message__content_type=ct, message__object_id=str(mailing.pk)
    )


@dataclass
class Summary:
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def handed_over(self) -> int:
        return self.total - sum(self.counts.get(s, 0) for s in WAITING)

    @property
    def gone(self) -> int:
        """Recipients the ESP has (cancelled, failed and blocked ones never reached it)."""
        return self.total - sum(self.counts.get(s, 0) for s in NOT_GONE)

    @property
    def percent(self) -> int:
        """Share of recipients no longer waiting to be sent (0–100)."""
        if not self.total:
            return 0
        return int(100 * self.handed_over / self.total)

    @property
    def problems(self) -> int:
        return sum(n for s, n in self.counts.items() if s in rules.FAILURES)

    def rows(self) -> list[tuple[str, str, int]]:
        """(status, label, count) in display order, only the ones present."""
        known = [s for s in ORDER if self.counts.get(s)]
        others = sorted(s for s in self.counts if s not in ORDER and self.counts[s])
        return [(s, rules.Status(s).label, self.counts[s]) for s in [*known, *others]]


def summary(mailing: Mailing) -> Summary:
    grouped = recipients_of(mailing).order_by().values("status").annotate(n=Count("pk"))
    counts = {row["status"]: row["n"] for row in grouped}
    return Summary(total=sum(counts.values()), counts=counts)


#: The progress page polls while a recipient has one of these: its count is about to move.
MOVING = WAITING | {rules.Status.QUEUED}


def is_busy(mailing: Mailing, result: Summary) -> bool:
    """Whether the progress page should keep polling: while the mailing starts or queues,
    while "update results" runs, and while any recipient is pending, sending or queued
    (whatever the mailing's state: a cancelled one may have mail still on its way)."""
    if mailing.refresh_running:
        return True
    if mailing.state in (MailingState.STARTING, MailingState.QUEUING):
        return True
    if mailing.state in (MailingState.DRAFT, MailingState.SCHEDULED):
        return False
    return any(result.counts.get(s) for s in MOVING)


def settle(mailing: Mailing, result: Summary | None = None) -> bool:
    """A mailing "sending" none of whose recipients waits any more becomes "sent", with
    the time its last recipient was handed over; "failed" if not one could be.

    Called by the every-minute schedule and by the results page; True if it changed.
    """
    if mailing.state != MailingState.QUEUED:
        return False
    if result is not None:
        if any(result.counts.get(s) for s in WAITING):
            return False
        anybody = result.total > 0
    else:
        if recipients_of(mailing).filter(status__in=WAITING).exists():
            return False
        anybody = recipients_of(mailing).exists()
    last = (
        SendAttempt.objects.filter(
            message__content_type=ContentType.objects.get_for_model(Mailing),
            message__object_id=str(mailing.pk),
            outcome=SendAttempt.Outcome.SENT,
        )
        .order_by()
        .aggregate(last=Max("at"))["last"]
    )
    if last is not None or not anybody:
        changes: dict[str, Any] = {
            "state": MailingState.SENT,
            "finished_at": last or mailing.queued_at or timezone.now(),
        }
    else:
        changes = {
            "state": MailingState.FAILED,
            "error": _("No recipient could be handed over to the ESP: see the problem recipients."),
        }
    changed = bool(
        Mailing.objects.filter(pk=mailing.pk, state=MailingState.QUEUED).update(**changes)
    )
    if changed:
        for name, value in changes.items():
            setattr(mailing, name, value)
    return changed


def settle_all() -> int:
    """Every minute: settle the mailings that are sending."""
    return sum(settle(m) for m in Mailing.objects.filter(state=MailingState.QUEUED))


def held_batches(mailing: Mailing, items: Any = None) -> list[OutboxItem]:
    """The mailing's batches whose hand-over was interrupted: the ESP may have sent
    them, so they wait for a person (outbox worker ``_hold``). Each with ``members``;
    ``items``: the outbox items to look in (default all)."""
    interrupted = SendAttempt.objects.filter(
        message_id=OuterRef("message_id"), outcome=SendAttempt.Outcome.INTERRUPTED
    )
    return list(
        outbox_items_of(mailing, items)
        .filter(state=SendState.FAILED)
        .filter(Exists(interrupted))
        .annotate(members=Count("message__recipients"))
        .defer("payload", "payload_mac")
        .order_by("pk")
    )


def problem_recipients(mailing: Mailing, limit: int = 50) -> Any:
    return (
        recipients_of(mailing)
        .filter(status__in=rules.FAILURES)
        .select_related("message")
        .order_by("-status_at", "-pk")[:limit]
    )


def unfinished(mailing: Mailing) -> Any:
    """Recipients the ESP accepted that have no final status yet."""
    return (
        recipients_of(mailing).exclude(status__in=rules.FINAL | WAITING).exclude(esp_message_id="")
    )


def request_refresh(mailing: Mailing) -> bool:
    """Start "update results" unless it is running; False if it already was."""
    started = Mailing.objects.filter(pk=mailing.pk, refresh_running=False).update(
        refresh_running=True, refresh_done=0, refresh_total=0, refresh_note=""
    )
    if not started:
        return False
    try:
        tasks.async_task(TASK, mailing.pk, task_name=f"wagtail-maillog results {mailing.pk}")
    except Exception as exc:
        Mailing.objects.filter(pk=mailing.pk).update(
            refresh_running=False, refresh_note=f"{type(exc).__name__}: {exc}"
        )
        raise
    return True


def refresh(pk: int) -> str:
    """The django-q2 task behind "update results"."""
    mailing = Mailing.objects.get(pk=pk)
    pending = unfinished(mailing)
    total = pending.count()
    Mailing.objects.filter(pk=pk).update(refresh_total=total)
    note = ""
    try:
        if total:
            note = _ask_esp(pk, pending)
    except Exception as exc:  # shown on the page; the counts are still current
        logger.warning("Updating results of mailing %s failed", pk, exc_info=True)
        note = _("The ESP could not be asked: %(error)s") % {"error": exc}
    finally:
        Mailing.objects.filter(pk=pk).update(
            refresh_running=False, refreshed_at=timezone.now(), refresh_note=note
        )
    return note or "ok"


def _ask_esp(pk: int, pending: Any) -> str:
    from ..fetchers import catch_up

    def progress(done: int, total: int) -> None:
        Mailing.objects.filter(pk=pk).update(refresh_done=done, refresh_total=total)

    result = catch_up(pending, progress=progress)
    if result.errors:
        return "; ".join(f"{name}: {error}" for name, error in result.errors.items())[:2000]
    return ""
