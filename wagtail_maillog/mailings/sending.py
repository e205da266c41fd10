"""Sending a mailing: from "send" to every recipient queued in the outbox.

The request only changes the mailing's state and asks django-q2 to run
:func:`queue_mailing`. That task streams the audience chunk by chunk; each
chunk is one transaction that skips members without a confirmed, healthy
address, records one log row per recipient and puts the chunk in the
outbox: as one batch message with per-recipient merge data where the
connector's ESP supports it, else one rendered message per recipient.

Safe to run twice or after a crash: each chunk locks the mailing row, only
the latest run goes on (an older one stops at its next chunk), and a run
leaves out addresses that already have a row in this mailing, so nobody is
queued twice; a cancelled mailing stops at the next chunk.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import tasks
from ..addresses import normalize
from ..context import label
from ..merging import MERGE_FIELD_ATTRIBUTE
from ..models import (
    Address,
    AddressStatus,
    Mailing,
    MailingState,
    Message,
    Recipient,
)
from ..models.addresses import PROBLEMS
from ..models.outbox import CANCELLABLE_STATES
from ..outbox.backend import enqueue
from . import audiences, content
from .batching import Plan, plan_for
from .results import outbox_items_of, recipients_of, settle_all
from .unsubscribe import make_token, one_click_url, unsubscribe_url

logger = logging.getLogger(__name__)

TASK = "wagtail_maillog.mailings.sending.queue_mailing"
SOURCE = "mailing"
#: A mailing "starting" or "queuing" for longer than this lost its task: start it again.
STUCK_AFTER = timedelta(minutes=10)


class MailingError(Exception):
    """The mailing cannot be sent as it is (no audience, wrong state, ...)."""


# ---- starting ---------------------------------------------------------------


def send(mailing: Mailing, user: Any = None, send_at: Any = None) -> Mailing:
    """Send now, or at ``send_at``: the request returns at once, a task does the work."""
    if audiences.get(mailing.audience) is None:
        raise MailingError(f"Unknown audience {mailing.audience!r}")
    plan_for(mailing.connector or None)  # a clear error now for a missing connector
    later = send_at is not None and send_at > timezone.now()
    with transaction.atomic():
        locked = Mailing.objects.select_for_update().get(pk=mailing.pk)
        if locked.state != MailingState.DRAFT:
            raise MailingError("Only a draft can be sent")
        locked.state = MailingState.SCHEDULED if later else MailingState.STARTING
        locked.send_at = send_at if later else timezone.now()
        locked.sent_by = user if getattr(user, "pk", None) else None
        locked.error = ""
        locked.save(update_fields=["state", "send_at", "sent_by", "error", "updated_at"])
        if not later:
            transaction.on_commit(lambda: _start_task(locked.pk))
    return locked


def _start_task(pk: int) -> None:
    try:
        tasks.async_task(
            TASK, pk, task_name=f"wagtail-maillog mailing {pk}", group="wagtail-maillog"
        )
    except Exception:  # the every-minute schedule picks it up
        logger.warning("Could not start mailing %s now; the schedule will", pk, exc_info=True)


def start_due() -> int:
    """Every minute: start scheduled mailings that are due, and restart lost ones."""
    now = timezone.now()
    due = list(
        Mailing.objects.filter(state=MailingState.SCHEDULED, send_at__lte=now).values_list(
            "pk", flat=True
        )
    )
    Mailing.objects.filter(pk__in=due, state=MailingState.SCHEDULED).update(
        state=MailingState.STARTING
    )
    lost = list(
        Mailing.objects.filter(
            state__in=[MailingState.STARTING, MailingState.QUEUING],
            updated_at__lt=now - STUCK_AFTER,
        ).values_list("pk", flat=True)
    )
    started = 0
    for pk in [*due, *lost]:
        queue_mailing(pk)
        started += 1
    settle_all()  # "sending" becomes "sent" once no recipient waits
    return started


def cancel(mailing: Mailing, user: Any = None) -> int:
    """Stop a mailing: not started yet, or the part still waiting in the outbox.

    Returns how many queued mails were taken out of the outbox.
    """
    from ..outbox.worker import cancel as cancel_items

    who = user if getattr(user, "pk", None) else None
    with transaction.atomic():
        locked = Mailing.objects.select_for_update().get(pk=mailing.pk)
        if locked.state in (MailingState.SCHEDULED, MailingState.STARTING, MailingState.QUEUING):
            _mark_cancelled(locked, who)
    waiting = outbox_items_of(mailing).filter(state__in=CANCELLABLE_STATES)
    taken_out = cancel_items(list(waiting.only("pk")), user=user)
    if taken_out:  # part of it had gone out already: the rest was stopped
        with transaction.atomic():
            locked = Mailing.objects.select_for_update().get(pk=mailing.pk)
            if locked.state == MailingState.QUEUED:
                _mark_cancelled(locked, who)
    return taken_out


def _mark_cancelled(locked: Mailing, user: Any) -> None:
    locked.state = MailingState.CANCELLED
    locked.cancelled_at = timezone.now()
    locked.cancelled_by = user
    locked.save(update_fields=["state", "cancelled_at", "cancelled_by", "updated_at"])


# ---- queuing (the django-q2 task) -----------------------------------------


def queue_mailing(pk: int) -> str:
    """Queue every recipient of mailing ``pk`` in the outbox (the django-q2 task)."""
    # started_at is kept from the first run: a later run looks for the earlier runs'
    # rows from then on (_already_queued).
    claimed = Mailing.objects.filter(
        pk=pk, state__in=[MailingState.STARTING, MailingState.QUEUING]
    ).update(
        state=MailingState.QUEUING,
        started_at=Coalesce(F("started_at"), Value(timezone.now())),
        queue_runs=F("queue_runs") + 1,
    )
    if not claimed:
        return f"mailing {pk}: nothing to do"
    mailing = Mailing.objects.select_related("sent_by", "page").get(pk=pk)
    run = _Run(mailing)
    if run.number > 1:
        _restart_counts(mailing)
    try:
        audience = audiences.get(mailing.audience)
        if audience is None:
            raise MailingError(f"Unknown audience {mailing.audience!r}")
        plan = plan_for(mailing.connector or None)
        # Checked again when it starts: a scheduled mailing's sender may have left
        # MAILING_FROM_ADDRESSES since it was scheduled.
        refusal = content.envelope_refusal(mailing)
        if refusal:
            raise content.Refused(refusal)
        body = content.build(mailing)
        for chunk in audience.entries(plan.batch_size if plan.batched else 500):
            if not _queue_chunk(run, chunk, plan, body):
                return f"mailing {pk}: cancelled or taken over by a later run"
    except Exception as exc:
        Mailing.objects.filter(pk=pk, state=MailingState.QUEUING).update(
            state=MailingState.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000]
        )
        logger.exception("Mailing %s failed while queuing", pk)
        raise
    Mailing.objects.filter(pk=pk, state=MailingState.QUEUING).update(
        state=MailingState.QUEUED, queued_at=timezone.now()
    )
    from ..outbox.worker import wake

    wake()
    return f"mailing {pk}: queued"


class _Run:
    """One run of the queuing task, and the addresses it went through so far.

    The first run of a mailing finds nobody queued before it: it remembers
    the addresses it passed (one per member, a few MB for 100,000) instead of
    asking the database each chunk. A later run (after a crash, or the
    schedule restarting a lost task) goes through the whole audience again
    and also asks the database for the rows of the runs before it: those
    members are counted again but not queued again, so the counts of the
    last run are exact (see :func:`_restart_counts`). Only the latest run
    writes: each chunk checks ``queue_runs`` under the mailing's row lock,
    and an older run stops.
    """

    def __init__(self, mailing: Mailing) -> None:
        self.mailing = mailing
        self.number = mailing.queue_runs
        self.seen: set[str] = set()

    def queued_before(self, wanted: set[str]) -> set[str]:
        """Those of ``wanted`` (not yet seen by this run) that an earlier run queued."""
        if self.number == 1:
            return set()
        return _already_queued(self.mailing, wanted - self.seen)


def _restart_counts(mailing: Mailing) -> None:
    """A later run counts the audience again from zero; the members earlier runs
    queued are counted as queued once (they are not queued again)."""
    Mailing.objects.filter(pk=mailing.pk).update(
        member_count=0, skipped={}, queued_count=recipients_of(mailing).count()
    )


def _queue_chunk(run: _Run, chunk: list[audiences.Entry], plan: Plan, body: Any) -> bool:
    """One transaction: filter, record and enqueue one chunk. False if cancelled or
    a later run took over."""
    mailing = run.mailing
    with transaction.atomic():
        state = (
            Mailing.objects.select_for_update()
            .filter(pk=mailing.pk)
            .values_list("state", "skipped", "queue_runs")
            .first()
        )
        if state is None or state[0] != MailingState.QUEUING or state[2] != run.number:
            return False
        skipped = Counter(state[1] or {})
        wanted = {e.address for e in chunk if e.address and "@" in e.address}
        health = {
            a: (apk, st)
            for a, apk, st in Address.objects.filter(address__in=wanted).values_list(
                "address", "pk", "status"
            )
        }
        earlier = run.queued_before(wanted)
        seen: set[str] = set()
        send_to: list[tuple[audiences.Entry, int]] = []
        for entry in chunk:
            found = health.get(entry.address)
            if entry.address not in wanted:
                skipped[audiences.NO_ADDRESS] += 1
            elif entry.address in seen or entry.address in run.seen:
                skipped[audiences.DUPLICATE] += 1
            elif entry.address in earlier:  # queued by an earlier run, and counted so
                seen.add(entry.address)
            elif found is None:
                skipped[audiences.NOT_KNOWN] += 1
            elif found[1] != AddressStatus.CONFIRMED:
                skipped[found[1]] += 1
            else:
                seen.add(entry.address)
                send_to.append((entry, found[0]))
        for message in _messages(mailing, send_to, plan, body):
            enqueue(message)
        Mailing.objects.filter(pk=mailing.pk).update(
            member_count=F("member_count") + len(chunk),
            queued_count=F("queued_count") + len(send_to),
            skipped=dict(skipped),
            updated_at=timezone.now(),
        )
    # Only once committed: a chunk rolled back queued nobody.
    run.seen |= seen
    return True


#: Clocks of the servers that may run a mailing's task can differ by up to this much.
CLOCK_SKEW = timedelta(hours=1)


def _already_queued(mailing: Mailing, wanted: set[str]) -> set[str]:
    """The addresses of ``wanted`` that have a row in this mailing already (queued by
    an earlier run).

    Two index lookups: the recipient rows of these addresses since the mailing
    started (the (address, created_at) index), then which of their messages are
    this mailing's. Joined in one query, PostgreSQL could walk every message of
    the mailing so far for each chunk instead.
    """
    since = (mailing.started_at or timezone.now()) - CLOCK_SKEW
    rows = list(
        Recipient.objects.filter(address__in=wanted, created_at__gte=since).values_list(
            "address", "message_id"
        )
    )
    if not rows:
        return set()
    ours = set(
        Message.objects.filter(
            pk__in={m for _a, m in rows},
            content_type=ContentType.objects.get_for_model(Mailing),
            object_id=str(mailing.pk),
        ).values_list("pk", flat=True)
    )
    return {address for address, message in rows if message in ours}


_TOKEN = "0TOKEN0"


def _values(
    mailing: Mailing, entry: audiences.Entry, address_pk: int, pattern: str
) -> dict[str, str]:
    """One member's merge values; ``pattern`` is the unsubscribe URL with ``_TOKEN`` in it
    (one ``reverse()`` per chunk, not per member)."""
    url = pattern.replace(_TOKEN, make_token(address_pk, mailing.pk))
    # A member's name goes into the subject: no line break may start a header.
    name = content.one_line(entry.name) if entry.name else ""
    return {"name": name, "email": entry.address, "unsubscribe_url": url}


def _base_message(
    mailing: Mailing, subject: str, text: str, html: str, to: list[str], test: bool = False
) -> Any:
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=mailing.from_email or settings.DEFAULT_FROM_EMAIL,
        to=to,
        reply_to=[mailing.reply_to] if mailing.reply_to else None,
    )
    message.attach_alternative(html, "text/html")
    label(
        message,
        source="mailing_test" if test else SOURCE,
        related=None if test else mailing,  # a test is not one of the mailing's recipients
        user=mailing.sent_by,
        system=False,
        connector=mailing.connector or None,
        undo_seconds=0,
        suppress=True if test else None,  # a test obeys suppression, whatever its source
    )
    return message


def _messages(
    mailing: Mailing, send_to: list[tuple[audiences.Entry, int]], plan: Plan, body: Any
) -> Iterable[Any]:
    if not send_to:
        return
    pattern = unsubscribe_url(_TOKEN)
    if plan.batched:
        spelling = plan.merge_field or ""
        message = _base_message(
            mailing,
            content.for_esp(body.subject, spelling),
            content.for_esp(body.text, spelling),
            content.for_esp(body.html, spelling, html=True),
            [e.address for e, _pk in send_to],
        )
        values = {e.address: _values(mailing, e, pk, pattern) for e, pk in send_to}
        message.merge_data = {a: content.merge_values(v) for a, v in values.items()}
        # Each member's own one-click unsubscribe (RFC 8058), as in a rendered copy.
        message.merge_headers = {a: _unsubscribe_headers(v) for a, v in values.items()}
        setattr(message, MERGE_FIELD_ATTRIBUTE, spelling)  # the log shows what each got
        yield message
        return
    for entry, pk in send_to:
        yield member_message(mailing, entry, pk, body, pattern)


def member_message(
    mailing: Mailing,
    entry: audiences.Entry,
    address_pk: int,
    body: content.Content,
    pattern: str | None = None,
) -> EmailMultiAlternatives:
    """One member's own copy, rendered here: their merge values, their own unsubscribe
    link and RFC 8058 ``List-Unsubscribe`` headers.

    The mailing's per-recipient path, and what a resend to a member sends (a batch
    cannot be sent again as it was: the ESP filled in its merge fields).
    """
    values = _values(mailing, entry, address_pk, pattern or unsubscribe_url(_TOKEN))
    message = _base_message(
        mailing,
        content.fill(body.subject, values),
        content.fill(body.text, values),
        content.fill(body.html, values, html=True),
        [entry.address],
    )
    message.extra_headers = _unsubscribe_headers(values)
    return message


def _unsubscribe_headers(values: dict[str, str]) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for one member (their merge values)."""
    token = values["unsubscribe_url"].rstrip("/").rsplit("/", 1)[-1]
    return {
        "List-Unsubscribe": f"<{one_click_url(token)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


# ---- a test to oneself ---------------------------------------------------


def send_test(mailing: Mailing, user: Any) -> str:
    """Send the mailing to ``user``'s own address alone, marked as a test; returns it.

    Refused (``MailingError`` / ``content.Refused``, with the reason) when the
    account has no usable address, when that address has a problem status
    (a test obeys suppression like any mail), or when the user could not send
    the mailing as it is (sender not allowed, a line break in a header, a page
    body they may not see or that is private).
    """
    address = (getattr(user, "email", "") or "").strip()
    if not address:
        raise MailingError(
            _("your account has no email address; add one in your account settings.")
        )
    try:
        if content.has_control_characters(address):
            raise ValidationError("control characters")
        validate_email(address)
    except ValidationError:
        raise MailingError(
            _("the email address of your account is not valid; correct it in your settings.")
        ) from None
    refusal = content.refusal(mailing, user)
    if refusal:
        raise content.Refused(refusal)
    problem = (
        Address.objects.filter(address=normalize(address), status__in=PROBLEMS)
        .values_list("status", flat=True)
        .first()
    )
    if problem:
        raise MailingError(
            _(
                "your address %(address)s has the status “%(status)s”, so mail to it is not "
                "sent. Once the address works again, someone who manages addresses can "
                "clear the problem."
            )
            % {"address": address, "status": AddressStatus(problem).label}
        )
    body = content.build(mailing)
    name = content.one_line(
        (user.get_full_name() if hasattr(user, "get_full_name") else "") or str(user)
    )
    values = {"name": name, "email": address, "unsubscribe_url": preview_unsubscribe_url()}
    message = _base_message(
        mailing,
        "[TEST] " + content.fill(body.subject, values),
        content.fill(body.text, values),
        content.fill(body.html, values, html=True),
        [address],
        test=True,
    )
    label(message, user=user)
    if not message.send():  # suppressed at the last moment (the pre_send receiver)
        raise MailingError(_("your address has a problem status; no test was sent."))
    return address


def preview_unsubscribe_url() -> str:
    """Where the unsubscribe link of a preview or test leads: it unsubscribes nobody."""
    return unsubscribe_url("preview")
