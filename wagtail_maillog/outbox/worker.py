"""The outbox worker: claim due mail, hand it to its connector, record the outcome.

Exactly-once hand-over, as far as an ESP API allows:

* a claim is one conditional UPDATE (``SKIP LOCKED`` on PostgreSQL), so two
  workers never hold the same message;
* a claim is a lease: a worker killed mid-send leaves the message in
  "sending" until the lease runs out, then the next worker takes it over;
* each attempt is written *before* the ESP is called ("in progress"), so a
  hand-over cut short shows up as "interrupted" (the ESP may have accepted
  it) and is never repeated silently.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from anymail.backends.base import AnymailBaseBackend
from anymail.exceptions import AnymailCancelSend, AnymailRecipientsRefused
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import status as rules
from ..addresses.suppression import apply as suppress
from ..conf import get_setting
from ..context import ATTEMPT_ATTRIBUTE, PK_ATTRIBUTE
from ..models import OutboxItem, Recipient, SendAttempt, SendState
from ..models.outbox import CANCELLABLE_STATES, WAITING
from ..recording import describe, on_post_send
from . import connectors, parking, retry
from . import interrupted as interrupted_batch
from .payload import load

logger = logging.getLogger(__name__)

TASK = "wagtail_maillog.outbox.worker.process_outbox"

#: The worker's clock (tests replace it to step through a retry schedule).
clock = timezone.now
WAKE_KEY = "wagtail_maillog:outbox:wake"


@dataclass
class RunResult:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    blocked: int = 0
    interrupted: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"sent {self.sent}, retrying {self.retrying}, failed {self.failed}, "
            f"blocked {self.blocked}, interrupted {self.interrupted}"
        )


def wake() -> None:
    """Ask django-q2 for a worker run (at most one request every two seconds).

    The mail is already safe in the outbox: if the broker cannot be reached,
    the every-minute schedule sends it, so the caller's ``send()`` still succeeds.
    """
    if not cache.add(WAKE_KEY, 1, timeout=2):
        return
    try:
        from django_q.tasks import async_task

        async_task(TASK, task_name="wagtail-maillog outbox", group="wagtail-maillog")
    except Exception:
        logger.warning(
            "Could not wake a django-q2 worker; the schedule will send it", exc_info=True
        )


def _due(now: Any, enabled: set[str]) -> Q:
    waiting = Q(state__in=WAITING, next_attempt_at__lte=now, connector__in=enabled)
    abandoned = Q(state=SendState.SENDING, lease_until__lt=now)
    return waiting | abandoned


def claim(limit: int, owner: str, now: Any = None) -> list[OutboxItem]:
    """Take up to ``limit`` due messages for ``owner``; nobody else gets them."""
    now = now or clock()
    due = _due(now, connectors.enabled_names())
    lease_until = now + timedelta(seconds=get_setting("LEASE_SECONDS"))
    candidates = OutboxItem.objects.filter(due).order_by("next_attempt_at", "pk")
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            ids = list(
                candidates.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit]
            )
        else:
            ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        # Re-checking "due" makes the UPDATE itself the arbiter where
        # SKIP LOCKED is missing: a row another worker took no longer matches.
        OutboxItem.objects.filter(pk__in=ids).filter(due).update(
            state=SendState.SENDING,
            lease_owner=owner,
            lease_until=lease_until,
            attempts=F("attempts") + 1,
            last_attempt_at=now,
        )
    return list(
        OutboxItem.objects.filter(pk__in=ids, lease_owner=owner, state=SendState.SENDING)
        .select_related("message")
        .order_by("pk")
    )


def _close_interrupted(item: OutboxItem) -> bool:
    """Mark attempts left "in progress" by a lost worker; True if there were any."""
    return bool(
        SendAttempt.objects.filter(
            message_id=item.message_id, outcome=SendAttempt.Outcome.STARTED
        ).update(
            outcome=SendAttempt.Outcome.INTERRUPTED,
            error=_(
                "The worker stopped during the hand-over; the ESP may have accepted the "
                "message. It was sent again after the lease ran out."
            ),
        )
    )


def _is_batch(item: OutboxItem) -> bool:
    """A message to more than one recipient (a mailing's batch: hundreds of members)."""
    return Recipient.objects.filter(message_id=item.message_id)[:2].count() > 1


def _hold(item: OutboxItem, owner: str) -> None:
    """An interrupted batch is not handed over again blindly: the ESP may have sent it
    to every member. It waits as "failed" (no automatic retry) with its recipients
    "unknown", for a person to send it again (Retry) or drop it (Cancel sending)."""
    text = str(
        _(
            "The worker stopped during the hand-over of this batch: the ESP may have "
            "sent it. It is not sent again on its own. Retry sends it again to every "
            "recipient; Cancel sending drops it."
        )
    )
    with transaction.atomic():
        SendAttempt.objects.filter(
            message_id=item.message_id, outcome=SendAttempt.Outcome.INTERRUPTED
        ).update(error=text)
        _set_recipients(item, rules.Status.UNKNOWN, text)
        _still_mine(item, owner).update(
            state=SendState.FAILED,
            next_attempt_at=None,
            auto_retry=False,
            last_error=text,
            lease_owner="",
            lease_until=None,
            first_failure_at=item.first_failure_at or clock(),
        )
    logger.warning("Message %s: an interrupted batch is held for a person", item.message_id)


def _set_recipients(item: OutboxItem, status: str, reason: str = "") -> None:
    Recipient.objects.filter(message_id=item.message_id).exclude(
        status__in=rules.FINAL - {rules.Status.FAILED}
    ).update(status=status, status_at=clock(), reason=reason)


def _still_mine(item: OutboxItem, owner: str) -> Any:
    return OutboxItem.objects.filter(pk=item.pk, lease_owner=owner, state=SendState.SENDING)


def _already_handed_over(item: OutboxItem) -> bool:
    """The ESP answered an earlier attempt, but the worker died before clearing the item."""
    return (
        SendAttempt.objects.filter(
            message_id=item.message_id, outcome=SendAttempt.Outcome.SENT
        ).exists()
        or Recipient.objects.filter(message_id=item.message_id).exclude(esp_message_id="").exists()
    )


def _renew_lease(item: OutboxItem, owner: str) -> bool:
    """Extend our lease before each hand-over; False if another worker took it over."""
    lease_until = clock() + timedelta(seconds=get_setting("LEASE_SECONDS"))
    return bool(_still_mine(item, owner).update(lease_until=lease_until))


def deliver(item: OutboxItem, owner: str, result: RunResult) -> None:
    """Hand one claimed message to its connector and record what happened."""
    if not _renew_lease(item, owner):
        return
    interrupted = _close_interrupted(item)
    if interrupted:
        result.interrupted += 1
    if _already_handed_over(item):
        _still_mine(item, owner).delete()  # sending it again would be a double send
        result.sent += 1
        return
    accepted: dict[str, str] = {}
    if interrupted and _is_batch(item):
        found = interrupted_batch.accepted_by_esp(item, clock())
        if found is None:  # nobody can tell what the ESP took: a person decides
            _hold(item, owner)
            return
        accepted = {a.lower(): esp_id for a, esp_id in found.items()}
        if len(accepted) >= interrupted_batch.record_accepted(item, accepted, clock()):
            _still_mine(item, owner).delete()  # the ESP took all of it
            result.sent += 1
            return
    attempt = SendAttempt.objects.create(
        message_id=item.message_id,
        outcome=SendAttempt.Outcome.STARTED,
        connector=item.connector,
    )
    try:
        message = load(item.payload, item.payload_mac)
    except Exception as exc:  # unreadable (TamperedPayload, ...): no retry can fix it
        _fail(item, owner, attempt, exc, result, permanent=True)
        return
    if accepted:  # hand over only what the ESP did not take before
        interrupted_batch.drop_recipients(message, set(accepted))
    setattr(message, PK_ATTRIBUTE, item.message_id)
    setattr(message, ATTEMPT_ATTRIBUTE, attempt.pk)
    Recipient.objects.filter(message_id=item.message_id, status=rules.Status.PENDING).update(
        status=rules.Status.SENDING, status_at=clock()
    )
    try:
        backend = connectors.open_connection(item.connector)
        if not isinstance(backend, AnymailBaseBackend):
            # anymail's pre_send suppresses problem addresses; other backends need us to.
            suppress(message, item.message_id)
        sent = backend.send_messages([message])
    except AnymailCancelSend:  # every recipient has a problem status: nothing to hand over
        sent = 0
    except AnymailRecipientsRefused as exc:
        # The ESP answered (post_send stored "rejected" per recipient): nothing to retry.
        SendAttempt.objects.filter(pk=attempt.pk).update(error=describe(exc))
        _still_mine(item, owner).delete()
        result.failed += 1
        return
    except Exception as exc:
        if _esp_answered(message):  # a post_send receiver failed, not the ESP
            _store_late_answer(item, owner, attempt, message, exc, result)
        else:  # the ESP or the network said no
            _fail(item, owner, attempt, exc, result)
        return
    _succeed(item, owner, attempt, bool(sent), result)


#: Pauses before storing the ESP's answer again, when storing it failed (tests shorten them).
STORE_AGAIN_PAUSES: tuple[float, ...] = (0.0, 1.0, 3.0)


def _esp_answered(message: Any) -> bool:
    """anymail parsed the ESP's answer (it does so before its post_send signal)."""
    status = getattr(message, "anymail_status", None)
    return bool(status is not None and status.recipients)


def _store_late_answer(
    item: OutboxItem,
    owner: str,
    attempt: SendAttempt,
    message: Any,
    error: BaseException,
    result: RunResult,
) -> None:
    """The ESP took the message, but storing its answer failed (the database went away).

    Trying again would send it twice. Store the answer again instead, after a
    pause or two. If the database stays away, leave the claim to its lease: the
    next worker marks the attempt "interrupted", so the double send is on record.
    """
    text = describe(error)
    logger.warning(
        "Message %s was handed over, but storing the ESP's answer failed: %s",
        item.message_id,
        text,
    )
    for pause in STORE_AGAIN_PAUSES:
        time.sleep(pause)
        try:
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()  # reconnects after a lost connection
            attempt.refresh_from_db(fields=["outcome"])
            if attempt.outcome == SendAttempt.Outcome.STARTED:  # our receiver did not get through
                on_post_send(None, message=message, status=message.anymail_status, esp_name="")
            note = _("The ESP took the message, but storing its answer failed at first: %s")
            SendAttempt.objects.filter(pk=attempt.pk).update(error=note % text)
            _succeed(item, owner, attempt, True, result)
            return
        except Exception:
            logger.warning("Storing the ESP's answer for message %s failed again", item.message_id)
    logger.error(
        "Message %s was handed over, but the ESP's answer could not be stored; after the "
        "lease it is sent again, and its attempt marked interrupted",
        item.message_id,
    )


def _succeed(
    item: OutboxItem, owner: str, attempt: SendAttempt, sent: bool, result: RunResult
) -> None:
    attempt.refresh_from_db(fields=["outcome"])
    with transaction.atomic():
        if not sent:
            # anymail's pre_send cancelled it: every address suppressed (already
            # "blocked"), or another app's receiver said no (still "sending")
            SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.BLOCKED)
            Recipient.objects.filter(
                message_id=item.message_id, status=rules.Status.SENDING
            ).update(
                status=rules.Status.CANCELLED,
                status_at=clock(),
                reason=_("The send was cancelled before it reached the ESP (a pre_send receiver)."),
            )
            result.blocked += 1
        elif attempt.outcome == SendAttempt.Outcome.STARTED:
            # not an anymail backend: no post_send, so the hand-over is all we know
            SendAttempt.objects.filter(pk=attempt.pk).update(outcome=SendAttempt.Outcome.SENT)
            Recipient.objects.filter(
                message_id=item.message_id, status=rules.Status.SENDING
            ).update(status=rules.Status.SENT, status_at=clock())
            result.sent += 1
        else:
            result.sent += 1
        _still_mine(item, owner).delete()  # the payload (and attachments) go with it


def _fail(
    item: OutboxItem,
    owner: str,
    attempt: SendAttempt,
    error: BaseException,
    result: RunResult,
    permanent: bool = False,
) -> None:
    text = describe(error)
    now = clock()
    wait = None if permanent else retry.next_attempt(item.attempts, error)
    with transaction.atomic():
        SendAttempt.objects.filter(pk=attempt.pk).update(
            outcome=SendAttempt.Outcome.FAILED, error=text
        )
        changes: dict[str, Any] = {
            "last_error": text,
            "lease_owner": "",
            "lease_until": None,
            "first_failure_at": item.first_failure_at or now,
        }
        if wait is None:
            changes.update(state=SendState.FAILED, next_attempt_at=None, auto_retry=False)
            _set_recipients(item, rules.Status.FAILED, text)
            result.failed += 1
        else:
            changes.update(state=SendState.RETRY_PENDING, next_attempt_at=now + wait)
            _set_recipients(item, rules.Status.PENDING, text)
            result.retrying += 1
        _still_mine(item, owner).update(**changes)
    logger.warning("Sending message %s failed: %s", item.message_id, text)


def process_outbox(time_budget: float = 50.0) -> str:
    """The django-q2 task: send what is due, batch after batch, for up to ``time_budget`` s."""
    enabled, now = connectors.enabled_names(), clock()
    parking.park_disabled(enabled, now)
    parking.release_enabled(enabled, now)
    owner = uuid.uuid4().hex
    result = RunResult()
    started = time.monotonic()
    while time.monotonic() - started < time_budget:
        items = claim(get_setting("OUTBOX_BATCH"), owner)
        if not items:
            break
        for item in items:
            deliver(item, owner, result)
    return str(result)


def retry_now(items: Any, user: Any = None) -> int:
    """Manual retry: back to "retry pending", due now, even after max attempts."""
    ids = [i.pk for i in items]
    count = (
        OutboxItem.objects.filter(pk__in=ids)
        .exclude(state=SendState.SENDING)
        .update(state=SendState.RETRY_PENDING, next_attempt_at=clock(), auto_retry=True)
    )
    Recipient.objects.filter(message__outbox__pk__in=ids, status=rules.Status.FAILED).update(
        status=rules.Status.PENDING, status_at=clock()
    )
    if count:
        transaction.on_commit(wake)
    return count


def cancel(items: Any, user: Any = None) -> int:
    """Cancel: out of the outbox, recipients "cancelled" (not while being handed over)."""
    ids = [i.pk for i in items]
    now = clock()
    who = _("Cancelled by %(user)s") % {"user": user} if user else _("Cancelled")
    with transaction.atomic():
        doomed = list(
            OutboxItem.objects.select_for_update()
            .filter(pk__in=ids, state__in=CANCELLABLE_STATES)
            .values_list("pk", "message_id", "connector")
        )
        if not doomed:
            return 0
        message_ids = [m for _pk, m, _c in doomed]
        Recipient.objects.filter(message_id__in=message_ids).exclude(
            status__in=rules.FINAL - {rules.Status.FAILED}
        ).update(status=rules.Status.CANCELLED, status_at=now, reason=who)
        SendAttempt.objects.bulk_create(
            SendAttempt(
                message_id=m, at=now, outcome=SendAttempt.Outcome.CANCELLED, connector=c, error=who
            )
            for _pk, m, c in doomed
        )
        OutboxItem.objects.filter(pk__in=[pk for pk, _m, _c in doomed]).delete()
    return len(doomed)
