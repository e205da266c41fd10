"""Keeps the deliverability rollup (:class:`~wagtail_maillog.models.DailyCount`) up to date.

A scheduled task (:func:`catch_up`, every minute) counts what the log gained
since its last run, so neither a webhook nor a send pays for the rollup:

* **events** (delivered, deferred, bounced, complained, unsubscribed, opened,
  clicked): a recipient counts on the day (the ESP's time) of its *first* event
  of a kind. An ESP's retry is not stored twice (the event store dedupes it)
  and a recipient's second open finds the first, so replays and repeats add
  nothing; order does not matter.
* **sends**: each send attempt the ESP answered lists the recipients it took
  ("sent" or "queued"); they count as sent on the attempt's day.

Rows are read by id, in two steps (see :class:`~wagtail_maillog.models.RollupState`),
and counted in one pass per window; the window's sums are written with one
read and at most one UPDATE and one INSERT. Purging the log leaves the rollup as
it is: it holds counts, not addresses. :func:`rebuild` recounts from the log.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, Max, Min, OuterRef
from django.utils import timezone

from ..bulk import update_fields
from ..models import METRICS, DailyCount, Event, RollupState, SendAttempt
from ..purge import cutoff
from ..signals import threshold_crossed
from . import figures

logger = logging.getLogger(__name__)

#: Event types counted, each as the metric of the same name (all but "sent").
COUNTED_EVENTS = METRICS[1:]
#: A recipient the ESP answered with one of these was handed over ("sent").
TAKEN = frozenset({"sent", "queued"})
#: Ids counted per transaction (a first run over a large log takes several).
WINDOW = 50_000
#: An attempt still "in progress" this long after it started no longer holds the
#: count back (its worker died and nothing marked it interrupted).
STALE_ATTEMPT = timedelta(days=1)
#: The thresholds are checked over this many days (the dashboard panel's period).
ALERT_DAYS = 7

Key = tuple[date, str, str, str, str]  # day, source, connector, ESP, domain


class Tally:
    """Sums of one window, per rollup row."""

    def __init__(self) -> None:
        self.rows: dict[Key, dict[str, int]] = defaultdict(lambda: dict.fromkeys(METRICS, 0))

    def add(self, key: Key, metric: str, n: int = 1) -> None:
        self.rows[key][metric] += n

    def __bool__(self) -> bool:
        return bool(self.rows)


def _key(
    moment: datetime, source: str | None, connector: str | None, esp: str | None, address: str
) -> Key:
    esp = esp or ""
    return (
        timezone.localdate(moment),
        source or "",
        (connector or esp)[:64],
        esp[:64],
        figures.counted_domain(address),
    )


def count_events(low: int, high: int, tally: Tally, since: date | None = None) -> None:
    """Add the events with ids in (low, high] that are a recipient's first of their kind."""
    earlier = Event.objects.filter(
        recipient_id=OuterRef("recipient_id"),
        event_type=OuterRef("event_type"),
        id__lt=OuterRef("id"),
    )
    rows = (
        Event.objects.filter(id__gt=low, id__lte=high, event_type__in=COUNTED_EVENTS)
        .filter(~Exists(earlier))  # an orphan (no recipient yet) has no earlier one: counted
        .values_list(
            "event_type",
            "timestamp",
            "received_at",
            "address",
            "esp_name",
            "recipient__message__source",
            "recipient__message__connector",
            "recipient__message__esp_name",
        )
    )
    for kind, at, received, address, esp, source, connector, message_esp in rows.iterator(2000):
        key = _key(at or received, source, connector, message_esp or esp, address)
        if since is None or key[0] >= since:
            tally.add(key, kind)


def count_sends(low: int, high: int, tally: Tally, since: date | None = None) -> None:
    """Add the recipients the ESP took in the send attempts with ids in (low, high]."""
    rows = SendAttempt.objects.filter(
        id__gt=low, id__lte=high, outcome=SendAttempt.Outcome.SENT
    ).values_list(
        "at", "response", "connector", "message__source", "message__connector", "message__esp_name"
    )
    for at, response, attempt_connector, source, connector, esp in rows.iterator(500):
        if not isinstance(response, dict):
            continue
        for address, answer in response.items():
            if isinstance(answer, dict) and answer.get("status") in TAKEN:
                key = _key(at, source, connector or attempt_connector, esp, address)
                if since is None or key[0] >= since:
                    tally.add(key, "sent")


def write(tally: Tally) -> None:
    """Add ``tally`` to the rollup: one read, one UPDATE, one INSERT at most."""
    if not tally:
        return
    keys = list(tally.rows)
    days = {k[0] for k in keys}
    existing = {
        (r.day, r.source, r.connector, r.esp_name, r.domain): r
        for r in DailyCount.objects.filter(
            day__gte=min(days),
            day__lte=max(days),
            source__in={k[1] for k in keys},
            connector__in={k[2] for k in keys},
            domain__in={k[4] for k in keys},
        )
    }
    changed, new = [], []
    for key, sums in tally.rows.items():
        row = existing.get(key)
        if row is None:
            day, source, connector, esp, domain = key
            new.append(
                DailyCount(
                    day=day, source=source, connector=connector, esp_name=esp, domain=domain, **sums
                )
            )
            continue
        for metric, n in sums.items():
            setattr(row, metric, getattr(row, metric) + n)
        changed.append(row)
    if changed:
        update_fields(changed, list(METRICS))
    if new:
        DailyCount.objects.bulk_create(new, batch_size=1000)
        transaction.on_commit(figures.forget_choices)


def _state() -> RollupState:
    """The one state row, locked: runs of the task (and a rebuild) take turns."""
    RollupState.objects.get_or_create(pk=1)
    return RollupState.objects.select_for_update().get(pk=1)


def _windows(low: int, high: int) -> Iterator[tuple[int, int]]:
    while low < high:
        yield low, min(low + WINDOW, high)
        low += WINDOW


def _first_open_attempt(after: int, upto: int, now: datetime) -> int | None:
    """The first attempt in (after, upto] still in progress (its outcome is not known)."""
    return SendAttempt.objects.filter(
        id__gt=after, id__lte=upto, outcome=SendAttempt.Outcome.STARTED, at__gt=now - STALE_ATTEMPT
    ).aggregate(first=Min("id"))["first"]


@dataclass
class Run:
    events: tuple[int, int]  # ids counted: (after, up to)
    attempts: tuple[int, int]
    crossed: list[figures.Crossing]


def catch_up(now: datetime | None = None) -> Run:
    """Count what the log gained since the last run (the scheduled task).

    Ids up to the previous run's horizon are counted; the current highest ids
    become the next horizon. An attempt still in progress stops the attempt count
    before it, until it ends. Each window of ids is its own transaction (a first
    run over a large log does not hold one for minutes), and moves the marks with
    the counts, under the state's lock: two runs at once count nothing twice.
    """
    now = now or timezone.now()
    with transaction.atomic():
        state = _state()
        event_range = (state.event_mark, max(state.event_mark, state.event_horizon))
        attempt_top = state.attempt_horizon
        open_attempt = _first_open_attempt(state.attempt_mark, attempt_top, now)
        if open_attempt is not None:
            attempt_top = open_attempt - 1
        attempt_range = (state.attempt_mark, max(state.attempt_mark, attempt_top))
    _count_up_to(event_range[1], "event_mark", count_events)
    _count_up_to(attempt_range[1], "attempt_mark", count_sends)
    with transaction.atomic():
        state = _state()
        state.event_horizon = Event.objects.aggregate(top=Max("id"))["top"] or 0
        state.attempt_horizon = SendAttempt.objects.aggregate(top=Max("id"))["top"] or 0
        state.updated_at = now
        news = _check_thresholds(state)
        state.save()
    for crossing in news:
        transaction.on_commit(lambda c=crossing: _announce(c))
    return Run(event_range, attempt_range, news)


def _count_up_to(target: int, mark: str, count: Any) -> None:
    while True:
        with transaction.atomic():
            state = _state()
            low = getattr(state, mark)
            if low >= target:
                return
            high = min(low + WINDOW, target)
            tally = Tally()
            count(low, high, tally)
            write(tally)
            setattr(state, mark, high)
            state.save(update_fields=[mark])


def _check_thresholds(state: RollupState) -> list[figures.Crossing]:
    """The crossings of the last days not announced yet; remembers the current ones."""
    counts = figures.totals(figures.Period.last(ALERT_DAYS))
    current = figures.crossed(counts)
    levels = ("warning", "critical")
    before = state.crossed or {}
    news = [
        c
        for c in current
        if c.rate.key not in before
        or levels.index(c.threshold.level) > levels.index(before[c.rate.key])
    ]
    state.crossed = {c.rate.key: c.threshold.level for c in current}
    return news


def _announce(crossing: figures.Crossing) -> None:
    """Send ``threshold_crossed``; a receiver that fails is logged, not the task's failure."""
    answers = threshold_crossed.send_robust(
        sender=RollupState,
        rate=crossing.rate.key,
        level=crossing.threshold.level,
        value=crossing.value,
        threshold=crossing.threshold.value,
        days=ALERT_DAYS,
    )
    for receiver, answer in answers:
        if isinstance(answer, Exception):
            logger.error("A threshold_crossed receiver failed: %r", receiver, exc_info=answer)


def default_since() -> date | None:
    """The first day the log still holds whole: the day after the purge's cutoff."""
    limit = cutoff()
    return None if limit is None else timezone.localdate(limit) + timedelta(days=1)


def rebuild(since: date | None = None, everything: bool = False) -> dict[str, Any]:
    """Recount the rollup from the log, for the days from ``since``.

    Days before ``since`` keep their counts: the log no longer holds their mail
    whole (the purge took it). ``everything`` recounts all days from what is left.
    """
    if not everything and since is None:
        since = default_since()
    with transaction.atomic():
        state = _state()
        old = (
            DailyCount.objects.all() if since is None else DailyCount.objects.filter(day__gte=since)
        )
        removed, _ = old.delete()
        transaction.on_commit(figures.forget_choices)
        event_top = Event.objects.aggregate(top=Max("id"))["top"] or 0
        attempt_horizon = SendAttempt.objects.aggregate(top=Max("id"))["top"] or 0
        open_attempt = _first_open_attempt(0, attempt_horizon, timezone.now())
        attempt_top = attempt_horizon if open_attempt is None else open_attempt - 1
        # From here on the scheduled task counts only what comes after these ids
        # (and the attempts from the first one still in progress).
        state.event_mark = state.event_horizon = event_top
        state.attempt_mark, state.attempt_horizon = attempt_top, attempt_horizon
        state.updated_at = timezone.now()
        state.save()
    # The recount adds to the rows as the task does; each window takes the lock in turn,
    # so neither a long transaction nor the task waits for the whole rebuild.
    for count, top in ((count_events, event_top), (count_sends, attempt_top)):
        for low, high in _windows(0, top):
            with transaction.atomic():
                _state()
                tally = Tally()
                count(low, high, tally, since)
                write(tally)
    return {"since": since, "removed": removed}
