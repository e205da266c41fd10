"""Mailing queue: a 100,000-member newsletter queued, against django-post_office.

    python -m benchmarks.mailing_queue [--quick]

Each side runs in a fresh process of its own, so its peak RSS growth is its
own: the time from "send" until every recipient is queued, and the peak RSS
(``ru_maxrss``) minus the RSS before. django-post_office's side is
``post_office.mail.send_many`` of 100,000 mails (1,000 with --quick) into its
own tables (in calls of 5,000 on MariaDB, see ``MYSQL_SEND_MANY``). Targets
for ours: at most 10 s, at most 150 MB RSS growth, and faster than
django-post_office.

Ours: a mailing to a mailing list of that many confirmed members, through
the sandbox ESP's connector (batches of ``MAILING_BATCH_SIZE``, 500).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import ROOT, Figure, figure, log, peak_rss_bytes, rss_bytes, setup_django

MEASURE = "mailing queue"
TARGET_S = 10
TARGET_MB = 150
SUBJECT = "Our spring newsletter"
TEXT = "Dear member,\n\nHere is what happened this spring.\n" * 10
HTML = "<p>Dear member,</p>" + "<p>Here is what happened this spring.</p>" * 10


#: Mails per ``send_many`` call on MariaDB. send_many writes all its mails with one
#: ``bulk_create``, which Django sends to MariaDB as one INSERT; the server refuses a
#: statement over ``max_allowed_packet`` (16 MB by default, ~1.5 KB a mail here), so
#: there the 100,000 go in calls of 5,000. One call on SQLite and PostgreSQL.
MYSQL_SEND_MANY = 5_000


def queue_post_office(members: int) -> dict[str, Any]:
    """django-post_office's ``send_many``: one queued Email per member."""
    from django.db import connection
    from post_office import mail
    from post_office.models import Email

    addresses = [f"member{i}@example.com" for i in range(members)]
    per_call = MYSQL_SEND_MANY if connection.vendor == "mysql" else members
    start = time.perf_counter()
    for first in range(0, members, per_call):
        mail.send_many(
            [
                {
                    "sender": "news@example.com",
                    "recipients": [address],
                    "subject": SUBJECT,
                    "message": TEXT,
                    "html_message": HTML,
                }
                for address in addresses[first : first + per_call]
            ]
        )
    seconds = time.perf_counter() - start
    assert Email.objects.count() == members
    return {"seconds": seconds, "esp_calls": 0}


def _members(count: int) -> str:
    """A mailing list of ``count`` confirmed members, written in bounded chunks."""
    from wagtail_maillog.models import Address, AddressStatus, MailingList, MailingListMember

    board = MailingList.objects.create(name=f"Benchmark {count}")
    chunk = 5_000
    for start in range(0, count, chunk):
        numbers = range(start, min(start + chunk, count))
        MailingListMember.objects.bulk_create(
            MailingListMember(mailing_list=board, address=f"member{i}@example.com", name=f"M {i}")
            for i in numbers
        )
        Address.objects.bulk_create(
            Address(address=f"member{i}@example.com", status=AddressStatus.CONFIRMED)
            for i in numbers
        )
    from .harness import analyze

    analyze()  # as autovacuum would, within a minute of such a fill (PostgreSQL)
    return f"list:{board.pk}"


def queue_ours(members: int) -> dict[str, Any]:
    """Our mailing: "send", then the queuing task, until every recipient is queued.

    The members are made before the clock starts. The queuing task runs here, in
    this process, as a django-q2 worker would run it; no worker is woken, so
    nothing is handed to the ESP meanwhile. "ESP calls" are the outbox items the
    worker will hand over: one per batch of ``MAILING_BATCH_SIZE`` recipients.
    """
    from django.core.cache import cache
    from django.test import override_settings

    from wagtail_maillog.mailings import sending
    from wagtail_maillog.models import Mailing, MailingState, OutboxItem
    from wagtail_maillog.outbox import worker

    audience = _members(members)
    mailing = Mailing.objects.create(subject=SUBJECT, body=HTML, audience=audience)
    cache.set(worker.WAKE_KEY, 1, timeout=3600)  # no worker: we time the queuing only
    sending._start_task = lambda pk: None  # the task is run below, in this process
    maillog = {
        "CONNECTORS": {"default": {"BACKEND": "wagtail_maillog.sandbox.SandboxBackend"}},
        "SANDBOX_EVENT_DELAY": None,
    }
    with override_settings(WAGTAIL_MAILLOG=maillog):
        start = time.perf_counter()
        sending.send(mailing)
        sending.queue_mailing(mailing.pk)
        seconds = time.perf_counter() - start
    mailing.refresh_from_db()
    assert mailing.state == MailingState.QUEUED, mailing.error
    assert mailing.queued_count == members, mailing.queued_count
    return {"seconds": seconds, "esp_calls": OutboxItem.objects.count()}


SIDES = {"post_office": queue_post_office, "ours": queue_ours}


def side_main(side: str, members: int, out: str) -> None:
    """In the side's own process: measure, then write the result as JSON."""
    setup_django(fresh=False)
    before = rss_bytes()
    result = SIDES[side](members)
    result["rss_growth_mb"] = (peak_rss_bytes() - before) / 2**20
    Path(out).write_text(json.dumps(result))


def run_side(side: str, members: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-m", "benchmarks.mailing_queue", "--side", side]
            + ["--members", str(members), "--json-out", out.name],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=ROOT,
            check=True,
        )
        return json.loads(Path(out.name).read_text())


def run(quick: bool) -> list[Figure]:
    members = 1_000 if quick else 100_000
    if importlib.util.find_spec("post_office") is None:
        missing = "django-post_office is not installed (pip install -e '.[benchmark]')"
        return [figure(MEASURE, "django-post_office send_many", None, "s", note=missing)]
    theirs = run_side("post_office", members)
    log(f"post_office: {members:,} in {theirs['seconds']:.1f} s, +{theirs['rss_growth_mb']:.0f} MB")
    ours = run_side("ours", members)
    log(f"ours: {members:,} in {ours['seconds']:.1f} s, +{ours['rss_growth_mb']:.0f} MB")
    return [
        figure(MEASURE, "members", members),
        figure(MEASURE, "django-post_office send_many", theirs["seconds"], "s"),
        figure(MEASURE, "django-post_office RSS growth", theirs["rss_growth_mb"], "MB"),
        figure(MEASURE, "ours: send to all queued", ours["seconds"], "s", at_most=TARGET_S),
        figure(MEASURE, "ours: RSS growth", ours["rss_growth_mb"], "MB", at_most=TARGET_MB),
        figure(MEASURE, "ours: ESP calls at send time", ours["esp_calls"], "calls"),
        figure(
            MEASURE,
            "ours / django-post_office (time)",
            ours["seconds"] / theirs["seconds"],
            "×",
            below=1,
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=sorted(SIDES))
    parser.add_argument("--members", type=int)
    parser.add_argument("--json-out")
    known, _rest = parser.parse_known_args()
    if known.side:
        side_main(known.side, known.members, known.json_out)
    else:
        from .harness import main

        main(run, __doc__)
