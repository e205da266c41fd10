"""What one queued mail and one webhook event write: the WAL they append.

    python -m benchmarks.write_volume [--quick]

The rates of :mod:`benchmarks.peers` move by ±15 % from run to run on this
machine; the write volume does not, and on SQLite it is what a commit and the
checkpoints after it cost (docs/performance.md, "Queueing one mail"). Counted
on SQLite as WAL frames (pages) with automatic checkpoints off, on PostgreSQL
as WAL bytes (``pg_current_wal_lsn`` before and after); MariaDB gives no such
count here and is left out.

1. Queueing: ``EmailMessage.send()`` through the outbox against
   django-post_office's ``mail.send()``, one mail a call, on a database that
   holds a backlog of each (``benchmarks.peer_settings``, side "ours": both
   apps installed, neither sends).
2. One-event webhook: Postmark deliveries, one a request, through Django's
   test client to ours' tracking webhook, for recipients the ESP took (their
   ESP ids set as a hand-over sets them). anymail-history's receiver needs
   settings of its own: :mod:`benchmarks.peers` times it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .harness import Figure, figure, log, main, settle
from .peers import AUTH, WEBHOOK, postmark_delivery, ratio
from .peers_run import BODY, FROM, address, subject

os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.peer_settings"
os.environ["MAILLOG_PEER_SIDE"] = "ours"
# One connection throughout, as a site's kept connection: the SQLite count needs its
# checkpoints off, and on PostgreSQL the webhook calls its function, as under gunicorn.
os.environ["MAILLOG_PEER_PERSISTENT"] = "1"


@dataclass
class Sizes:
    backlog: int
    measured: int


FULL = Sizes(backlog=5_000, measured=1_000)
QUICK = Sizes(backlog=200, measured=50)


def written(action: Callable[[], None]) -> tuple[float, str]:
    """The WAL ``action`` appends: (amount, unit), on a settled database."""
    from django.db import connection

    settle()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            wal = Path(f"{connection.settings_dict['NAME']}-wal")
            before = wal.stat().st_size if wal.exists() else 0
            cursor.execute("PRAGMA page_size")
            [(page,)] = cursor.fetchall()
        else:
            cursor.execute("SELECT pg_current_wal_lsn()")
            [(start,)] = cursor.fetchall()
    action()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            appended = wal.stat().st_size - max(before, 32)  # the WAL's header: 32 bytes
            cursor.execute("PRAGMA wal_autocheckpoint = 1000")
            return appended / (page + 24), "pages"  # a frame: a 24-byte header, a page
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [start])
        [(appended,)] = cursor.fetchall()
        return float(appended), "bytes"


def queue(kind: str, first: int, count: int) -> None:
    if kind == "ours":
        from django.core.mail import EmailMessage

        for i in range(first, first + count):
            EmailMessage(subject(i), BODY, FROM, [address(i)]).send()
    else:
        from post_office import mail

        for i in range(first, first + count):
            mail.send(recipients=[address(i)], sender=FROM, subject=subject(i), message=BODY)


def handed_over(count: int) -> list[tuple[str, str]]:
    """(ESP id, address) of ``count`` queued recipients, set as the ESP took them."""
    from django.utils import timezone

    from wagtail_maillog.models import Recipient
    from wagtail_maillog.status import Status

    recipients = list(Recipient.objects.order_by("pk")[:count])
    for r in recipients:
        r.esp_message_id, r.status, r.status_at = f"pm-{r.pk}", Status.SENT, timezone.now()
    Recipient.objects.bulk_update(recipients, ["esp_message_id", "status", "status_at"])
    return [(r.esp_message_id, r.address) for r in recipients]


def post(pairs: list[tuple[str, str]]) -> None:
    from django.test import Client

    client = Client()
    for esp_id, to in pairs:
        response = client.post(
            WEBHOOK,
            json.dumps(postmark_delivery(esp_id, to)),
            content_type="application/json",
            HTTP_AUTHORIZATION=AUTH,
        )
        assert response.status_code == 200, response.status_code


def run(quick: bool) -> list[Figure]:
    from django.db import connection

    from wagtail_maillog.models import Event

    from .peers import migrate_peers

    if connection.vendor not in ("sqlite", "postgresql"):
        log("write volume: no WAL count on this database, left out")
        return []
    sizes = QUICK if quick else FULL
    migrate_peers()
    n = sizes.measured
    queue("ours", 0, sizes.backlog)
    queue("post_office", 0, sizes.backlog)
    amounts: dict[str, float] = {}
    for kind in ("ours", "post_office"):
        amount, unit = written(lambda kind=kind: queue(kind, sizes.backlog, n))
        amounts[kind] = amount / n
        log(f"queueing, {kind}: {amounts[kind]:,.1f} {unit} of WAL a mail")
    measure = "write volume"
    note = "WAL pages on SQLite, bytes on PostgreSQL"
    figures = [
        figure(measure, "queued mail: ours", amounts["ours"], "WAL/mail", note=note),
        figure(measure, "queued mail: post_office", amounts["post_office"], "WAL/mail", note=note),
        figure(
            measure,
            "queued mail: ours / post_office",
            ratio(amounts["ours"], amounts["post_office"]),
            "×",
        ),
    ]
    pairs = handed_over(n + 20)
    post(pairs[:20])  # the first requests: URLs resolved, the session's function planned
    amount, unit = written(lambda: post(pairs[20:]))
    assert Event.objects.count() == n + 20, "ours did not store every event"
    log(f"one-event webhook, ours: {amount / n:,.1f} {unit} of WAL an event")
    figures.append(figure(measure, "one-event webhook: ours", amount / n, "WAL/event", note=note))
    return figures


if __name__ == "__main__":
    main(run, __doc__)
