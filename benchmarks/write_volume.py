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
   test client, to ours' tracking webhook for recipients the ESP took (their
   ESP ids set as a hand-over sets them), and to anymail's with
   anymail-history's receiver for its ``SentMessage`` rows of the same pairs
   (a child process with that side's settings,
   ``benchmarks.peers_run webhook-wal``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

from .harness import Figure, figure, log, main, wal_appended
from .peers import _queued, child_env, migrate_peers, ratio, run_child
from .peers_run import WARM_UP_POSTS, webhook_wal

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


def taken_by_esp(count: int) -> list[tuple[str, str]]:
    """(ESP id, address) of ``count`` queued recipients, set as the ESP took them."""
    from django.utils import timezone

    from wagtail_maillog.models import Recipient
    from wagtail_maillog.status import Status

    recipients = list(Recipient.objects.order_by("pk")[:count])
    for r in recipients:
        r.esp_message_id, r.status, r.status_at = f"pm-{r.pk}", Status.SENT, timezone.now()
    Recipient.objects.bulk_update(recipients, ["esp_message_id", "status", "status_at"])
    return [(r.esp_message_id, r.address) for r in recipients]


def history_wal(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """:func:`.peers_run.webhook_wal` on anymail-history's side, in a child process."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as out:
        json.dump(pairs, out)
        out.flush()
        run_child(["seed-history", out.name], child_env("history"))
        # Its connection kept between requests too (MAILLOG_PEER_PERSISTENT, above).
        found = run_child(["webhook-wal", out.name], child_env("history"))
    return json.loads(found.strip().splitlines()[-1])


def side_by_side(what: str, peer: str, per: dict[str, float], unit: str) -> list[Figure]:
    """Ours' and ``peer``'s amount of ``what`` (from ``per``), and their ratio."""
    measure, note = "write volume", "WAL pages on SQLite, bytes on PostgreSQL"
    return [
        figure(measure, f"{what}: ours", per["ours"], unit, note=note),
        figure(measure, f"{what}: {peer}", per[peer], unit, note=note),
        figure(measure, f"{what}: ours / {peer}", ratio(per["ours"], per[peer]), "×"),
    ]


def run(quick: bool) -> list[Figure]:
    from django.db import connection

    from wagtail_maillog.models import Event

    if connection.vendor not in ("sqlite", "postgresql"):
        log("write volume: no WAL count on this database, left out")
        return []
    sizes = QUICK if quick else FULL
    migrate_peers()
    n = sizes.measured
    _queued("ours", sizes.backlog)
    _queued("post_office", sizes.backlog)
    per: dict[str, float] = {}
    for kind in ("ours", "post_office"):
        amount, unit = wal_appended(lambda kind=kind: _queued(kind, n))
        per[kind] = amount / n
        log(f"queueing, {kind}: {per[kind]:,.1f} {unit} of WAL a mail")
    figures = side_by_side("queued mail", "post_office", per, "WAL/mail")
    pairs = taken_by_esp(WARM_UP_POSTS + n)
    ours = webhook_wal(pairs)
    assert Event.objects.count() == len(pairs), "ours did not store every event"
    history = history_wal(pairs)
    for side, found in (("ours", ours), ("anymail-history", history)):
        per[side] = found["amount"] / found["events"]
        log(f"one-event webhook, {side}: {per[side]:,.1f} {found['unit']} of WAL an event")
    figures += side_by_side("one-event webhook", "anymail-history", per, "WAL/event")
    return figures


if __name__ == "__main__":
    main(run, __doc__)
