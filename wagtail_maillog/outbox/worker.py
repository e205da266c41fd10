"""The outbox worker: claim due mail in batches, hand it to its connectors, record the outcomes.

Exactly-once hand-over, as far as an ESP API allows:

* a claim is one conditional UPDATE (``SKIP LOCKED`` on PostgreSQL), so two
  workers never hold the same message;
* a claim is a lease: a worker killed mid-send leaves the message in
  "sending" until the lease runs out, then the next worker takes it over;
* each attempt is written *before* the ESP is called ("in progress"), so a
  hand-over cut short shows up as "interrupted" (the ESP may have accepted
  it) and is never repeated silently.

A claimed batch costs the same statements for one message as for fifty
(:class:`Batch`): its attempts are written in one INSERT and its recipients
set "sending" in one UPDATE before the first ESP call; the messages go through
one open backend per connector (and sending thread, :mod:`.senders`); the
outcomes are kept in memory and stored together at the end.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from anymail.exceptions import AnymailCancelSend, AnymailRecipientsRefused
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BooleanField, Case, F, Q, Value, When
from django.db.models.functions import Length
from django.db.models.lookups import Exact
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import status as rules
from ..addresses import normalize
from ..addresses.suppression import exempt
from ..addresses.suppression import keep_deliverable as keep
from ..bulk import filter_in
from ..conf import get_setting
from ..context import ATTEMPT_ATTRIBUTE, PK_ATTRIBUTE
from ..models import Address, AddressStatus, Message, OutboxItem, Recipient, SendAttempt, SendState
from ..models.addresses import PROBLEMS
from ..models.outbox import CANCELLABLE_STATES, WAITING
from ..recording import Answer, describe, store_answers
from ..recording import _addresses as addresses_of
from ..tasks import async_task, keeping_connections
from . import connectors, parking, retry
from . import interrupted as interrupted_batch
from .payload import load
from .senders import Job, Senders

logger = logging.getLogger(__name__)

TASK = "wagtail_maillog.outbox.worker.process_outbox"

#: The worker's clock (tests replace it to step through a retry schedule).
clock = timezone.now
WAKE_KEY = "wagtail_maillog:outbox:wake"
#: Seconds between two requests for a run (the key's lifetime in the cache).
WAKE_SECONDS = 2
#: When this process last asked for a run (``time.monotonic()``): until its key
#: runs out, a send does not ask the cache again (on a site's shared cache, Redis or
#: Memcached, a round trip for each mail).
_asked_at = float("-inf")
#: Seconds a run claims new batches, unless told (at most the django-q2 timeout less 10 s).
TIME_BUDGET = 50.0


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

    def add(self, other: RunResult) -> None:
        for name in ("sent", "failed", "retrying", "blocked", "interrupted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def wake() -> None:
    """Ask django-q2 for a worker run (at most one request every two seconds).

    The mail is already safe in the outbox: if the broker cannot be reached,
    the every-minute schedule sends it, so the caller's ``send()`` still succeeds.
    """
    global _asked_at
    if time.monotonic() - _asked_at < WAKE_SECONDS:
        return  # this process's own key is still in the cache: add() would refuse
    if not cache.add(WAKE_KEY, 1, timeout=WAKE_SECONDS):
        return
    _asked_at = time.monotonic()
    try:
        async_task(TASK, task_name="wagtail-maillog outbox", group="wagtail-maillog")
    except Exception:
        logger.warning(
            "Could not wake a django-q2 worker; the schedule will send it", exc_info=True
        )


def forget_wake() -> None:
    """The next :func:`wake` asks for a run whenever the last was asked (tests)."""
    global _asked_at
    _asked_at = float("-inf")
    cache.delete(WAKE_KEY)


def _due(now: Any, enabled: set[str]) -> Case:
    """A row a worker may take now: waiting, come due, of a connector that is on; or
    "sending" with its lease run out (its worker died).

    One CASE, which no index can answer, so that the claim's queries, given the
    candidates' keys, find their rows by key on every database. (As an OR of indexed
    conditions, PostgreSQL planned it, with the statistics of a table that had just
    filled, as a BitmapOr over every queued row: each batch re-read the backlog.)
    """
    waiting = Q(state__in=WAITING, next_attempt_at__lte=now, connector__in=enabled)
    return Case(
        When(state=SendState.SENDING, then=Q(lease_until__lt=now)),
        # (An empty IN would make the whole CASE match nothing, taken-over rows too.)
        default=waiting if enabled else Value(False),
        output_field=BooleanField(),
    )


#: Candidates a claim reads, as a multiple of its batch: enough for this many workers
#: claiming at the same moment to find a batch each.
CANDIDATES = 4
#: Claims tried again when every candidate was taken meanwhile by another worker.
CLAIM_TRIES = 3


def _candidates(limit: int, now: Any, enabled: set[str], park: bool = True) -> list[int]:
    """The keys of up to ``limit`` due rows, earliest first, read without a lock.

    One index range per state, each in the order of ``maillog_outbox_due`` and cut at
    ``limit``: a claim reads a few rows however long the backlog. (One query over all
    states sorted every due row for each batch, and on MariaDB also locked each one,
    so a second worker found nothing to claim.) The connector is checked here, not
    in the query: with it there, PostgreSQL could prefer an index on the connector
    (there was one until migration 0018) and sort every queued row of the connector
    for each batch. Mail of a connector switched off since the run began is parked
    (:mod:`.parking`) when met, and the candidates read again.
    """
    waiting = [
        OutboxItem.objects.filter(state=state, next_attempt_at__lte=now) for state in WAITING
    ]
    abandoned = OutboxItem.objects.filter(state=SendState.SENDING, lease_until__lt=now)
    fields = ("next_attempt_at", "pk", "connector", "state")
    parts = [
        part.order_by("next_attempt_at", "pk").values_list(*fields)[:limit]
        for part in (*waiting, abandoned)
    ]
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(parts[0].union(*parts[1:], all=True))
    else:
        rows = [row for part in parts for row in part]
    rows.sort(key=lambda row: (row[0] is not None, row[0], row[1]))
    # A row whose lease ran out is taken over whatever its connector.
    usable = [pk for _at, pk, name, state in rows if name in enabled or state == SendState.SENDING]
    if len(usable) < len(rows) and park and parking.park_disabled(enabled, now):
        return _candidates(limit, now, enabled, park=False)
    return usable[:limit]


def claim(limit: int, owner: str, now: Any = None) -> list[OutboxItem]:
    """Take up to ``limit`` due messages for ``owner``; nobody else gets them."""
    now = now or clock()
    enabled = connectors.enabled_names()
    due = _due(now, enabled)
    lease_until = now + timedelta(seconds=get_setting("LEASE_SECONDS"))
    ids: list[int] = []
    taken = 0
    skip_locked = connection.features.has_select_for_update_skip_locked
    for attempt in range(CLAIM_TRIES):
        candidates = _candidates(limit * CANDIDATES, now, enabled)
        if not candidates:
            return []
        with transaction.atomic():
            if skip_locked:
                # Locked by key, in key order, up to ``limit``: the rows this claim
                # takes, passing over those another worker's claim holds.
                locked = OutboxItem.objects.filter(pk__in=candidates).filter(due)
                ids = list(
                    locked.order_by("pk")
                    .select_for_update(skip_locked=True)
                    .values_list("pk", flat=True)[:limit]
                )
            else:
                ids = candidates[:limit]
            taking = {
                "state": SendState.SENDING,
                "lease_owner": owner,
                "lease_until": lease_until,
                "attempts": F("attempts") + 1,
                "last_attempt_at": now,
            }
            # Rows locked above are due and stay so until this transaction ends: found
            # by key alone. Where SKIP LOCKED is missing (SQLite), re-checking "due"
            # makes the UPDATE itself the arbiter: a row another worker took no longer
            # matches.
            by_key = OutboxItem.objects.filter(pk__in=ids)
            taken = (by_key if skip_locked else by_key.filter(due)).update(**taking)
            if not skip_locked and taken < len(ids):
                # Another worker claimed some of the same candidates first. This
                # transaction has written: it holds the write lock (SQLite), so the
                # other candidates still due are read as they are, and taken instead.
                # (Before, such a worker took nothing and ended its run: a second
                # worker process on SQLite sent next to nothing.)
                mine = set(ids)
                others = [c for c in candidates if c not in mine]
                due_now = set(
                    OutboxItem.objects.filter(pk__in=others)
                    .filter(due)
                    .values_list("pk", flat=True)
                )
                more = [c for c in others if c in due_now][: limit - taken]
                taken += OutboxItem.objects.filter(pk__in=more).filter(due).update(**taking)
                ids += more
            if taken:
                break
        if attempt + 1 < CLAIM_TRIES:
            time.sleep(0.01 * (attempt + 1))  # the other claims commit, then read again
    if not taken:
        return []
    # Of the message row, only what suppression asks (its source) and its ESP's name
    # (``Batch._name_esps``): not its bodies and JSON columns, decoded for each mail
    # of the batch for nothing.
    return list(
        OutboxItem.objects.filter(pk__in=ids, lease_owner=owner, state=SendState.SENDING)
        .select_related("message")
        .only(*_ITEM_FIELDS, "message__source", "message__esp_name")
        .order_by("pk")
    )


#: The outbox row's own fields, which the worker reads (the payload among them).
_ITEM_FIELDS = [f.name for f in OutboxItem._meta.concrete_fields]


# ---- helpers of a batch --------------------------------------------------------------

#: Pauses before storing a batch's outcomes again, when storing them failed (tests shorten them).
STORE_AGAIN_PAUSES: tuple[float, ...] = (0.0, 1.0, 3.0)
#: Rows per UPDATE of :func:`_update_each` (its parameters grow with them).
EACH_CHUNK = 100


def _mine(owner: str, pks: list[int]) -> Any:
    """These outbox rows, as long as ``owner`` still holds them."""
    return OutboxItem.objects.filter(pk__in=pks, lease_owner=owner, state=SendState.SENDING)


def _update_each(queryset: Any, key: str, rows: dict[Any, dict[str, Any]]) -> None:
    """UPDATE each row (found by ``key``) with its own values, in one statement per
    :data:`EACH_CHUNK` rows (``CASE key WHEN ... THEN ...``); a value every row shares
    is written as it is."""
    model, items = queryset.model, list(rows.items())
    for start in range(0, len(items), EACH_CHUNK):
        part = dict(items[start : start + EACH_CHUNK])
        changes: dict[str, Any] = {}
        for name in next(iter(part.values())):
            output = model._meta.get_field(name)
            values = [row[name] for row in part.values()]
            if all(v == values[0] for v in values):
                changes[name] = values[0]
            else:
                changes[name] = Case(
                    *(
                        When(**{key: k}, then=Value(row[name], output_field=output))
                        for k, row in part.items()
                    ),
                    output_field=output,
                )
        queryset.filter(**{f"{key}__in": list(part)}).update(**changes)


def _esp_answered(message: Any) -> bool:
    """anymail parsed the ESP's answer (it does so before its post_send signal)."""
    status = getattr(message, "anymail_status", None)
    return bool(status is not None and status.recipients)


def _is_batch(item: OutboxItem) -> bool:
    """A message to more than one recipient (a mailing's batch: hundreds of members)."""
    return Recipient.objects.filter(message_id=item.message_id)[:2].count() > 1


#: A recipient in one of these, without an ESP id, has not been handed over yet.
NOT_HANDED_OVER = (
    rules.Status.NONE,
    rules.Status.PENDING,
    rules.Status.SENDING,
    rules.Status.UNKNOWN,
)


def _not_handed_over() -> Exact:
    """No ESP id, asked as a length. (As ``= ''`` the databases may read it through
    ``maillog_rcpt_espid``, whose '' entries are every recipient not handed over yet:
    the whole backlog, each batch.)"""
    return Exact(Length("esp_message_id"), 0)


def _handed_over(
    message_ids: list[int],
) -> tuple[dict[int, dict[str, str]], set[int], set[int]]:
    """What earlier attempts of these messages got to the ESP: {message: {address: ESP
    id}} of the recipients it took, the messages it answered (an attempt "sent", or a
    recipient with an ESP id), and those of them with recipients still to hand over.
    One with both is a batch the ESP took part of (interrupted, the rest failing
    after): only its rest goes again."""
    handed: dict[int, dict[str, str]] = {}
    for message_id, address, esp_id in (
        Recipient.objects.filter(message_id__in=message_ids)
        .exclude(esp_message_id="")
        .values_list("message_id", "address", "esp_message_id")
    ):
        handed.setdefault(message_id, {})[address] = esp_id
    answered = set(handed) | set(
        SendAttempt.objects.filter(
            message_id__in=message_ids, outcome=SendAttempt.Outcome.SENT
        ).values_list("message_id", flat=True)
    )
    return handed, answered, _still_to_hand_over(answered) if answered else set()


def _still_to_hand_over(message_ids: Any) -> set[int]:
    """Those of these messages with a recipient the ESP has not taken yet."""
    return set(
        Recipient.objects.filter(
            _not_handed_over(), message_id__in=message_ids, status__in=NOT_HANDED_OVER
        ).values_list("message_id", flat=True)
    )


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
        Recipient.objects.filter(_not_handed_over(), message_id=item.message_id).exclude(
            status__in=rules.FINAL - {rules.Status.FAILED}
        ).update(status=rules.Status.UNKNOWN, status_at=clock(), reason=text)
        _mine(owner, [item.pk]).update(
            state=SendState.FAILED,
            next_attempt_at=None,
            auto_retry=False,
            last_error=text,
            lease_owner="",
            lease_until=None,
            first_failure_at=item.first_failure_at or clock(),
        )
    logger.warning("Message %s: an interrupted batch is held for a person", item.message_id)


# ---- one batch -----------------------------------------------------------------------


@dataclass(eq=False)
class _Mail:
    """One claimed message on its way through a batch."""

    item: OutboxItem
    message: Any = None
    attempt_pk: int | None = None
    #: Recipients the ESP had taken before (an interrupted batch): left out now.
    accepted: dict[str, str] = field(default_factory=dict)
    unreadable: BaseException | None = None
    suppressed: bool = False
    job: Job | None = None

    @property
    def alone(self) -> bool:
        """Several recipients (a mailing's batch): handed over on its own, its attempt
        written right before its own call. A worker that dies then leaves at most one
        such batch "in progress" (held for a person), not every one it had claimed."""
        return self.message is not None and len(self.message.recipients()) > 1


@dataclass
class _Outcomes:
    """What a batch's hand-over gave, for :meth:`Batch.store`."""

    answered: list[tuple[_Mail, str]] = field(default_factory=list)  # (mail, attempt's error)
    plain: list[_Mail] = field(default_factory=list)  # taken by a backend without post_send
    blocked: list[tuple[_Mail, str]] = field(default_factory=list)  # (mail, attempt's error)
    failed: list[tuple[_Mail, str, timedelta | None]] = field(default_factory=list)
    leaving: list[int] = field(default_factory=list)  # outbox pks done with
    counts: RunResult = field(default_factory=RunResult)

    def mails(self) -> list[_Mail]:
        return [
            *(m for m, _e in self.answered),
            *self.plain,
            *(m for m, _e in self.blocked),
            *(m for m, _t, _w in self.failed),
        ]


class Batch:
    """A claimed batch: marked in progress, handed over, its outcomes stored.

    Each step costs the same statements for one message as for the whole batch
    (docs/outbox.md, "Exactly-once hand-over"); only the rare paths (a message
    taken over from a lost worker, a mailing's batch) add a few of their own.
    """

    def __init__(self, items: list[OutboxItem], owner: str, result: RunResult) -> None:
        self.items, self.owner, self.result = items, owner, result
        self.outcomes = _Outcomes()
        self.leased_at = time.monotonic()  # claim() just set the lease
        self.pending = {i.pk for i in items}  # claims whose outcome is not stored yet
        self.jobs: list[Job] = []

    def run(self, senders: Senders) -> None:
        mails = self._prepare(self._take_over(self.items))
        alone = [m for m in mails if m.job is not None and m.alone]
        together = [m for m in mails if m not in alone]
        senders.send([m.job for m in together if m.job is not None], tick=self._keep_lease)
        for mail in together:
            self._judge(mail)
        self.store()
        for mail in alone:  # its attempt right before its call, its outcome right after
            assert mail.job is not None
            self._keep_lease()
            if mail.job.skip:
                continue
            (mail.attempt_pk,) = self._open_attempts([mail])
            setattr(mail.message, ATTEMPT_ATTRIBUTE, mail.attempt_pk)
            senders.send([mail.job])
            self._judge(mail)
            self.store()

    # -- before the ESP ---------------------------------------------------------------

    def _take_over(self, items: list[OutboxItem]) -> list[OutboxItem]:
        """Claims of messages tried before (a retry, or a lost worker's message after its
        lease): close the attempts left "in progress", drop what the ESP answered already,
        and never hand an interrupted batch over blindly. First attempts skip all this."""
        again = [i.message_id for i in items if i.attempts > 1]
        if not again:
            return items
        started = set(
            SendAttempt.objects.filter(
                message_id__in=again, outcome=SendAttempt.Outcome.STARTED
            ).values_list("message_id", flat=True)
        )
        if started:
            SendAttempt.objects.filter(
                message_id__in=started, outcome=SendAttempt.Outcome.STARTED
            ).update(
                outcome=SendAttempt.Outcome.INTERRUPTED,
                error=_(
                    "The worker stopped during the hand-over; the ESP may have accepted the "
                    "message. It was sent again after the lease ran out."
                ),
            )
            self.result.interrupted += len(started)
        handed, answered, left = _handed_over(again)
        kept = []
        for item in items:
            partly = item.message_id in handed and item.message_id in left
            if item.message_id in answered and not partly:
                # The ESP answered it before (its worker died before clearing the item):
                # sending it again would be a double send.
                self.outcomes.leaving.append(item.pk)
                self.outcomes.counts.sent += 1
                continue
            accepted = handed.get(item.message_id, {})  # a batch the ESP took part of
            if item.message_id in started and _is_batch(item):
                found = interrupted_batch.accepted_by_esp(item, clock())
                if found is None:  # nobody can tell what the ESP took: a person decides
                    _hold(item, self.owner)
                    self.pending.discard(item.pk)
                    continue
                found = {normalize(a): esp_id for a, esp_id in found.items()}
                interrupted_batch.record_accepted(item, found, clock())
                accepted = {**accepted, **found}
                if not _still_to_hand_over([item.message_id]):
                    self.outcomes.leaving.append(item.pk)  # the ESP took all of it
                    self.outcomes.counts.sent += 1
                    continue
            item._maillog_accepted = accepted  # type: ignore[attr-defined]  # only the rest goes
            kept.append(item)
        return kept

    def _prepare(self, items: list[OutboxItem]) -> list[_Mail]:
        """Load the messages, hold back suppressed addresses and mark the batch in
        progress: its attempts (one INSERT) and its recipients "sending", committed
        before any ESP call."""
        mails = []
        for item in items:
            mail = _Mail(item, accepted=getattr(item, "_maillog_accepted", {}))
            try:
                mail.message = load(item.payload, item.payload_mac)
            except Exception as exc:  # unreadable (TamperedPayload, ...): no retry can fix it
                mail.unreadable = exc
            else:
                if mail.accepted:  # hand over only what the ESP did not take before
                    interrupted_batch.drop_recipients(mail.message, set(mail.accepted))
                setattr(mail.message, PK_ATTRIBUTE, item.message_id)
            mails.append(mail)
        readable = [m for m in mails if m.message is not None]
        if not mails:
            return mails
        now = clock()
        with transaction.atomic():
            if readable:
                # "Blocked" by an earlier attempt too: suppression is decided again at
                # each hand-over (an admin may have cleared the address's problem since).
                Recipient.objects.filter(
                    _not_handed_over(),
                    message_id__in=[m.item.message_id for m in readable],
                ).exclude(status=rules.Status.CANCELLED).update(
                    status=rules.Status.SENDING, status_at=now
                )
                self._suppress(readable, now)
                self._name_esps(readable)
            # A message to several recipients gets its attempt right before its own call.
            first = [m for m in mails if m.message is None or m.suppressed or not m.alone]
            for mail, pk in zip(first, self._open_attempts(first), strict=True):
                mail.attempt_pk = pk
        for mail in readable:
            if mail.attempt_pk is not None:
                setattr(mail.message, ATTEMPT_ATTRIBUTE, mail.attempt_pk)
            if not mail.suppressed:
                mail.job = Job(mail.item.connector, mail.message, context=mail)
                self.jobs.append(mail.job)
        return mails

    def _open_attempts(self, mails: list[_Mail]) -> list[int]:
        """The attempts "in progress" of these mails, in one INSERT; their pks."""
        if not mails:
            return []
        now = clock()
        rows = SendAttempt.objects.bulk_create(
            SendAttempt(
                message_id=m.item.message_id,
                at=now,
                outcome=SendAttempt.Outcome.STARTED,
                connector=m.item.connector,
            )
            for m in mails
        )
        if all(row.pk is not None for row in rows):
            return [row.pk for row in rows]
        # No RETURNING on this database: one attempt in progress per message, found by it.
        found = dict(
            SendAttempt.objects.filter(
                message_id__in=[m.item.message_id for m in mails],
                outcome=SendAttempt.Outcome.STARTED,
            ).values_list("message_id", "pk")
        )
        return [found[m.item.message_id] for m in mails]

    def _suppress(self, mails: list[_Mail], now: Any) -> None:
        """Suppression at hand-over, for the whole batch: one query for the problem
        addresses among all its recipients. They are taken off their message and
        recorded as "blocked"; a message left with nobody is not handed over."""
        checked = [m for m in mails if not exempt(m.message, m.item.message)]
        going = {m: {a for a, _n in addresses_of(m.message.recipients())} for m in checked}
        wanted = sorted(set().union(*going.values())) if going else []
        problems: dict[str, str] = {}
        for rows in filter_in(Address.objects.filter(status__in=PROBLEMS), "address", wanted):
            problems.update(rows.values_list("address", "status"))
        if not problems:
            return
        by_status: dict[str, set[int]] = {}  # problem status -> the messages it stops
        for mail in checked:
            blocked = going[mail] & set(problems)
            if not blocked:
                continue
            for address in blocked:
                by_status.setdefault(problems[address], set()).add(mail.item.message_id)
            message = mail.message
            message.to = keep(message.to, blocked)
            message.cc = keep(message.cc, blocked)
            message.bcc = keep(message.bcc, blocked)
            mail.suppressed = not (message.to or message.cc or message.bcc)
        for status, message_ids in by_status.items():  # one UPDATE per problem kind
            Recipient.objects.filter(
                message_id__in=message_ids,
                address__in=[a for a, s in problems.items() if s == status],
            ).update(
                status=rules.Status.BLOCKED,
                status_at=now,
                reason=_("Not sent: the address has the status “%(status)s”.")
                % {"status": AddressStatus(status).label},
            )

    def _name_esps(self, mails: list[_Mail]) -> None:
        """Each message's ESP as anymail names it ("Postmark", ...), for the mail log.

        Queueing wrote it already (``backend.enqueue``); only a message whose connector
        changed backend meanwhile (or queued before 0.2.0) is updated. (Before, every
        message of a batch was: on PostgreSQL its UPDATE wrote an entry in each of the
        message table's nine indexes, the subject's trigram index among them.)
        """
        names = {c: connectors.esp_name(c) for c in {m.item.connector for m in mails}}
        by_name: dict[str, list[int]] = {}
        for mail in mails:
            name = names[mail.item.connector]
            if name and mail.item.message.esp_name != name:
                by_name.setdefault(name, []).append(mail.item.message_id)
        for name, message_ids in by_name.items():
            Message.objects.filter(pk__in=message_ids).update(esp_name=name)

    def _keep_lease(self) -> None:
        """Renew the batch's leases before they could run out (a slow ESP). A message
        another worker took over meanwhile is not handed over by this one."""
        lease = get_setting("LEASE_SECONDS")
        if time.monotonic() - self.leased_at < lease / 3:
            return
        pks = sorted(self.pending)
        renewed = _mine(self.owner, pks).update(lease_until=clock() + timedelta(seconds=lease))
        self.leased_at = time.monotonic()
        if renewed == len(pks):
            return
        still = set(_mine(self.owner, pks).values_list("pk", flat=True))
        for job in self.jobs:
            item = job.context.item
            if item.pk not in still and job.cancel():
                logger.warning("Message %s was taken over by another worker", item.message_id)

    # -- after the ESP ----------------------------------------------------------------

    def _judge(self, mail: _Mail) -> None:
        """What happened to one message, kept for :meth:`store`."""
        out = self.outcomes
        if mail.message is None:
            self._failed(mail, mail.unreadable, permanent=True)  # type: ignore[arg-type]
            return
        if mail.suppressed:
            error = _("Every recipient has a problem status; nothing was sent.")
            out.blocked.append((mail, str(error)))
            out.counts.blocked += 1
            return
        job = mail.job
        assert job is not None
        if job.skip:  # another worker holds it now
            return
        error = None if isinstance(job.error, AnymailCancelSend) else job.error
        if isinstance(error, AnymailRecipientsRefused):
            # The ESP answered and refused every recipient: nothing to retry.
            out.answered.append((mail, describe(error)))
            out.counts.failed += 1
        elif error is not None and _esp_answered(mail.message):
            # The ESP took it; what failed came after its answer (a post_send receiver).
            note = _("The ESP took the message, but storing its answer failed at first: %s")
            out.answered.append((mail, note % describe(error)))
            out.counts.sent += 1
        elif error is not None:  # the ESP or the network said no
            self._failed(mail, error)
        elif not job.sent:  # a pre_send receiver cancelled it (anymail's AnymailCancelSend)
            out.blocked.append((mail, ""))
            out.counts.blocked += 1
        elif _esp_answered(mail.message):
            out.answered.append((mail, ""))
            out.counts.sent += 1
        else:  # not an anymail backend: no answer, the hand-over is all there is to know
            out.plain.append(mail)
            out.counts.sent += 1

    def _failed(self, mail: _Mail, error: BaseException, permanent: bool = False) -> None:
        wait = None if permanent else retry.next_attempt(mail.item.attempts, error)
        self.outcomes.failed.append((mail, describe(error), wait))
        if wait is None:
            self.outcomes.counts.failed += 1
        else:
            self.outcomes.counts.retrying += 1
        logger.warning("Sending message %s failed: %s", mail.item.message_id, describe(error))

    def store(self) -> None:
        """Store the batch's outcomes, in one transaction.

        The ESP took most of these messages already: if storing fails (the database
        went away), the hand-overs are not counted as failed, which would send them
        again. The outcomes are stored again, up to three times in about 4 seconds
        (an attempt the ESP answered then notes the first error); if the database
        stays away, the claims wait for their leases, as if the worker had died, and
        the next worker marks their attempts "interrupted".
        """
        out, self.outcomes = self.outcomes, _Outcomes()
        if not out.mails() and not out.leaving:
            self.result.add(out.counts)
            return
        first: BaseException | None = None
        for pause in (None, *STORE_AGAIN_PAUSES):
            try:
                if pause is not None:
                    time.sleep(pause)
                    if not connection.in_atomic_block:  # a lost connection: a new one
                        connection.close_if_unusable_or_obsolete()
                with transaction.atomic():
                    self._write(out, first)
            except Exception as exc:
                if first is None:
                    first = exc
                    logger.warning(
                        "Storing the outcomes of %s handed-over messages failed: %s",
                        len(out.mails()),
                        describe(exc),
                    )
                else:
                    logger.warning("Storing the outcomes of a batch failed again")
                continue
            self.result.add(out.counts)
            self.pending -= set(out.leaving) | {m.item.pk for m in out.mails()}
            return
        logger.error(
            "The outcomes of %s handed-over messages could not be stored; after the lease "
            "they are sent again, and their attempts marked interrupted",
            len(out.mails()),
        )

    def _write(self, out: _Outcomes, first_error: BaseException | None) -> None:
        now = clock()
        failed_mails = {m for m, _t, _w in out.failed}
        note = _("The ESP took the message, but storing its answer failed at first: %s")
        esps = {c: connectors.esp_name(c) for c in {m.item.connector for m, _e in out.answered}}
        store_answers(
            [
                Answer(
                    mail.item.message_id,
                    dict(mail.message.anymail_status.recipients or {}),
                    esps[mail.item.connector],
                    mail.attempt_pk,
                    error or (note % describe(first_error) if first_error else ""),
                )
                for mail, error in out.answered
            ]
        )
        if out.plain:
            SendAttempt.objects.filter(pk__in=[m.attempt_pk for m in out.plain]).update(
                outcome=SendAttempt.Outcome.SENT
            )
            Recipient.objects.filter(
                message_id__in=[m.item.message_id for m in out.plain],
                status=rules.Status.SENDING,
            ).update(status=rules.Status.SENT, status_at=now, reason="")
        if out.blocked:
            _update_each(
                SendAttempt.objects.all(),
                "pk",
                {
                    m.attempt_pk: {"outcome": SendAttempt.Outcome.BLOCKED, "error": error}
                    for m, error in out.blocked
                },
            )
            # Still "sending" after a pre_send receiver cancelled it (the suppressed are
            # "blocked" already).
            Recipient.objects.filter(
                message_id__in=[m.item.message_id for m, _e in out.blocked],
                status=rules.Status.SENDING,
            ).update(
                status=rules.Status.CANCELLED,
                status_at=now,
                reason=_("The send was cancelled before it reached the ESP (a pre_send receiver)."),
            )
        if out.failed:
            self._write_failures(out.failed, now)
        done = out.leaving + [m.item.pk for m in out.mails() if m not in failed_mails]
        if done:
            _mine(self.owner, done).delete()  # the payloads (and attachments) go with them

    def _write_failures(self, failed: list[tuple[_Mail, str, timedelta | None]], now: Any) -> None:
        """Failed hand-overs: the attempt says why; the message waits for its next attempt
        ("retry pending", recipients "pending") or failed for good ("failed")."""
        _update_each(
            SendAttempt.objects.all(),
            "pk",
            {
                m.attempt_pk: {"outcome": SendAttempt.Outcome.FAILED, "error": t}
                for m, t, _w in failed
            },
        )
        _update_each(
            # Not those the ESP took (part of an interrupted batch): they stay handed over.
            Recipient.objects.filter(_not_handed_over()).exclude(
                status__in=rules.FINAL - {rules.Status.FAILED}
            ),
            "message_id",
            {
                m.item.message_id: {
                    "status": rules.Status.FAILED if wait is None else rules.Status.PENDING,
                    "status_at": now,
                    "reason": text,
                }
                for m, text, wait in failed
            },
        )
        _update_each(
            _mine(self.owner, [m.item.pk for m, _t, _w in failed]),
            "pk",
            {
                m.item.pk: {
                    "state": SendState.FAILED if wait is None else SendState.RETRY_PENDING,
                    "next_attempt_at": None if wait is None else now + wait,
                    "auto_retry": wait is not None,
                    "last_error": text,
                    "lease_owner": "",
                    "lease_until": None,
                    "first_failure_at": m.item.first_failure_at or now,
                }
                for m, text, wait in failed
            },
        )


def hand_over(items: list[OutboxItem], owner: str, result: RunResult, senders: Senders) -> None:
    """Hand a claimed batch to its connectors and store what happened."""
    Batch(items, owner, result).run(senders)


def deliver(item: OutboxItem, owner: str, result: RunResult) -> None:
    """Hand one claimed message over (a batch of one)."""
    with Senders(1) as senders:
        hand_over([item], owner, result, senders)


# ---- runs ------------------------------------------------------------------------------


class _Helpers:
    """Asks django-q2 for another run while this one finds full batches.

    Every run that claims a full batch puts one more run in django-q2's queue,
    unless one is waiting there already: an idle worker (of any cluster sharing
    the queue) takes it, claims its own batches and does the same. Runs spread
    until every worker is busy, and the queue holds about one run meanwhile, not
    one per batch. Each cluster's pusher may hold up to ``queue_limit`` tasks of
    its own; those runs find nothing due by then and end at once.
    """

    #: Seconds between two looks at the queue, in one run.
    EVERY = 1.0

    def __init__(self) -> None:
        self.broker: Any = None
        self.last = -self.EVERY
        self.enabled = True

    def ask(self) -> None:
        if not self.enabled or time.monotonic() - self.last < self.EVERY:
            return
        self.last = time.monotonic()
        try:
            from django_q.conf import Conf

            if Conf.SYNC:  # runs in this process, one after the other: nobody else to ask
                self.enabled = False
                return
            from django_q.brokers import get_broker

            with keeping_connections():
                if self.broker is None:
                    self.broker = get_broker()
                if self.broker.queue_size():
                    return  # a run waits already
            async_task(
                TASK,
                task_name="wagtail-maillog outbox",
                group="wagtail-maillog",
                broker=self.broker,
            )
        except Exception:  # the broker is away: this run goes on alone
            logger.warning("Could not ask django-q2 for another outbox run", exc_info=True)
            self.enabled = False


def _time_budget() -> float:
    """:data:`TIME_BUDGET`, kept 10 s below the django-q2 ``timeout`` (which kills a task
    that runs longer), so a run ends with its last batch stored."""
    try:
        from django_q.conf import Conf

        timeout = Conf.TIMEOUT
    except Exception:
        timeout = None
    if not timeout:
        return TIME_BUDGET
    return max(1.0, min(TIME_BUDGET, float(timeout) - 10))


def process_outbox(time_budget: float | None = None) -> str:
    """The django-q2 task: send what is due, batch after batch, for up to ``time_budget``
    seconds (default: :func:`_time_budget`)."""
    enabled, now = connectors.enabled_names(), clock()
    parking.park_disabled(enabled, now)
    parking.release_enabled(enabled, now)
    owner = uuid.uuid4().hex
    result = RunResult()
    budget = _time_budget() if time_budget is None else time_budget
    size = get_setting("OUTBOX_BATCH")
    helpers = _Helpers()
    started = time.monotonic()
    with Senders(get_setting("SEND_THREADS")) as senders:
        while time.monotonic() - started < budget:
            items = claim(size, owner)
            if not items:
                break
            if len(items) >= size:  # more is probably due: let idle workers join in
                helpers.ask()
            hand_over(items, owner, result, senders)
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
