"""Purge: a million expired messages deleted while the site keeps working.

    python -m benchmarks.purge_expired [--quick]

Fills 1,000,000 messages (300,000 on MariaDB, see ``MYSQL_MESSAGES``; 5,000
with --quick), all older than the retention limit, then runs
:func:`wagtail_maillog.purge.purge` as the daily task does. Every
``transaction.atomic`` block of wagtail_maillog/purge.py is timed (the module's
``transaction`` is wrapped for the run): the longest one is how long the purge
can hold locks that a request or a worker may wait for. Target: the longest
transaction under 1 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from .harness import Figure, database, figure, log, main

MEASURE = "purge"
TARGET_S = 1.0
#: The full size on MariaDB. There each batch's ``UPDATE ... SET resent_from_id = NULL
#: WHERE resent_from_id IN (<1,000 ids>)`` reads every message left: past
#: ``eq_range_index_dive_limit`` (200 values) MariaDB estimates the rows from the
#: index's statistics, and an all-NULL column looks like one value matching every
#: row. The purge is then quadratic: a million took over half an hour on 2 busy
#: cores (a quarter of it in the first 10 minutes); see docs/performance.md.
MYSQL_MESSAGES = 300_000


class TimedTransactions:
    """Stands in for ``django.db.transaction`` in one module; times each ``atomic`` block."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.durations: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @contextmanager
    def atomic(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        start = time.perf_counter()
        try:
            with self.real.atomic(*args, **kwargs):
                yield
        finally:
            self.durations.append(time.perf_counter() - start)


@contextmanager
def timed(module: Any) -> Iterator[TimedTransactions]:
    timer = TimedTransactions(module.transaction)
    module.transaction = timer
    try:
        yield timer
    finally:
        module.transaction = timer.real


def measure(messages: int) -> list[Figure]:
    from django.utils import timezone

    from wagtail_maillog import purge
    from wagtail_maillog.conf import get_setting
    from wagtail_maillog.models import Event, Message

    from .generate import generate

    expired = timezone.now() - timedelta(days=get_setting("RETENTION_DAYS") + 1)
    filled = generate(messages, now=expired)
    events = Event.objects.count()
    log(f"filled {messages:,} expired messages, {events:,} events in {filled['seconds']} s")
    with timed(purge) as timer:
        start = time.perf_counter()
        result = purge.purge()
        total = time.perf_counter() - start
    assert result.messages == messages and not Message.objects.exists(), result
    longest = max(timer.durations)
    log(f"purged in {total:.1f} s, {result.batches} batches, longest transaction {longest:.3f} s")
    return [
        figure(MEASURE, "expired messages", messages, note=f"{events:,} events"),
        figure(MEASURE, "total time", total, "s", note=f"{result.batches} batches"),
        figure(MEASURE, "messages purged/s", messages / total, "messages/s"),
        figure(MEASURE, "longest transaction", longest, "s", below=TARGET_S),
    ]


def run(quick: bool) -> list[Figure]:
    if quick:
        return measure(5_000)
    return measure(MYSQL_MESSAGES if database() == "mysql" else 1_000_000)


if __name__ == "__main__":
    main(run, __doc__)
