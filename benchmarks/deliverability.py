"""Deliverability (issue 21): the rollup's counting, and the page over a large rollup.

    python -m benchmarks.deliverability [--quick]

1. Fills 1,000,000 messages (5,000 with --quick) with :mod:`benchmarks.generate`
   and a send attempt each, then recounts the whole log into the rollup
   (``rollup.rebuild``): events and recipients counted per second.
2. Adds 1,000 messages with their events and times one run of the scheduled
   task that counts them (``rollup.catch_up``): what the task costs each minute
   on a site sending 1,000 mails a minute.
3. Fills the rollup with its worst case for a year: every day, 8 sources x
   3 connectors x 32 domains (280,320 rows; a real site has far fewer), and
   times the page (last 90 days; a year; one domain; the CSV) and the
   dashboard as a superuser through Django's test client. The page reads only
   the rollup, whose size does not grow with the number of recipients: these
   are its times at 10 million recipients as at 10. Target: 200 ms.
"""

from __future__ import annotations

import time
from datetime import timedelta

from .harness import Figure, figure, log, main
from .maillog_pages import client_as_superuser, time_page

MEASURE = "deliverability"
TARGET_MS = 200
SOURCES = ["newsletter", "invoice", "welcome", "password_reset", "form", "system", "a", "b"]
CONNECTORS = ["transactional", "newsletter", "backup"]
DOMAINS = [
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr",
    "live.com", "msn.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com", "aol.com",
    "icloud.com", "me.com", "mac.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net",
    "gmx.com", "web.de", "t-online.de", "orange.fr", "free.fr", "laposte.net", "sfr.fr",
    "wanadoo.fr", "comcast.net", "yandex.ru", "mail.ru", "",
]  # fmt: skip


def add_attempts() -> int:
    """One "sent" attempt per generated message, answered "sent" for its recipient."""
    from django.db import connection

    from wagtail_maillog.models import Message, Recipient, SendAttempt

    q = connection.ops.quote_name
    build = "json_build_object" if connection.vendor == "postgresql" else "json_object"
    answer = f"{build}(r.address, {build}('message_id', r.esp_message_id, 'status', 'sent'))"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {q(SendAttempt._meta.db_table)} "
            "(message_id, at, outcome, connector, error, response) "
            f"SELECT m.id, m.created_at, 'sent', m.esp_name, '', {answer} "
            f"FROM {q(Message._meta.db_table)} m JOIN {q(Recipient._meta.db_table)} r "
            "ON r.message_id = m.id WHERE NOT EXISTS (SELECT 1 FROM "
            f"{q(SendAttempt._meta.db_table)} a WHERE a.message_id = m.id)"
        )
        return cursor.rowcount


def count_the_log(messages: int) -> list[Figure]:
    from wagtail_maillog.deliverability import rollup
    from wagtail_maillog.models import DailyCount, Event

    from .generate import generate

    filled = generate(messages)
    attempts = add_attempts()
    log(f"filled {messages:,} messages, {filled['events']:,} events, {attempts:,} attempts")
    events = Event.objects.count()
    start = time.perf_counter()
    rollup.rebuild(everything=True)
    seconds = time.perf_counter() - start
    log(f"rebuild: {seconds:.1f} s, {DailyCount.objects.count():,} rollup rows")
    figures = [
        figure(MEASURE, "rebuild: messages in the log", messages),
        figure(
            MEASURE,
            "rebuild: events + recipients counted",
            round((events + attempts) / seconds),
            "rows/s",
            note=f"{seconds:.1f} s for {events:,} events and {attempts:,} sends",
        ),
    ]
    rollup.catch_up()  # the horizon moves past the rebuild
    generate(1_000)
    add_attempts()
    rollup.catch_up()  # sees the new ids: the next run counts them
    start = time.perf_counter()
    run = rollup.catch_up()
    ms = (time.perf_counter() - start) * 1000
    counted = run.events[1] - run.events[0]
    log(f"catch-up of 1,000 new mails ({counted:,} event ids): {ms:.0f} ms")
    figures.append(
        figure(
            MEASURE,
            "task run: 1,000 new mails",
            round(ms),
            "ms",
            note=f"{counted:,} new events and 1,000 sends, in a log of {messages:,}",
        )
    )
    return figures


def worst_case_rollup(days: int = 365) -> int:
    from django.utils import timezone

    from wagtail_maillog.models import DailyCount

    DailyCount.objects.all().delete()
    today = timezone.localdate()
    n = 0
    for back in range(days):
        day = today - timedelta(days=back)
        rows = []
        for s, source in enumerate(SOURCES):
            for c, connector in enumerate(CONNECTORS):
                for d, domain in enumerate(DOMAINS):
                    sent = 50 + (back * 7 + s * 13 + c * 5 + d * 3) % 200
                    rows.append(
                        DailyCount(
                            day=day,
                            source=source,
                            connector=connector,
                            esp_name="Postmark",
                            domain=domain,
                            sent=sent,
                            delivered=sent * 95 // 100,
                            deferred=sent // 50,
                            bounced=sent // 40,
                            complained=(back + d) % 97 == 0,
                            unsubscribed=sent // 200,
                            opened=sent // 3,
                            clicked=sent // 10,
                        )
                    )
        DailyCount.objects.bulk_create(rows, batch_size=2000)
        n += len(rows)
    return n


def pages() -> dict[str, str]:
    from django.urls import reverse
    from django.utils import timezone

    index = reverse("wagtail_maillog_deliverability:index")
    csv = reverse("wagtail_maillog_deliverability:csv")
    today = timezone.localdate()
    year = f"start={today - timedelta(days=364)}&end={today}"
    return {
        "page, last 90 days": f"{index}?period=90",
        "page, a year": f"{index}?period=range&{year}",
        "page, one domain (90 days)": f"{index}?period=90&domain=gmail.com",
        "CSV, a year": f"{csv}?period=range&{year}",
        "dashboard (with the panel)": reverse("wagtailadmin_home"),
    }


def time_pages() -> list[Figure]:
    from django.db import connection

    from .harness import analyze

    rows = worst_case_rollup()
    with connection.cursor() as cursor:
        analyze(cursor)
    log(f"rollup: {rows:,} rows (a year, worst case)")
    client = client_as_superuser()
    urls = pages()
    client.get(urls["page, last 90 days"])  # warm-up
    figures = [figure(MEASURE, "rollup rows (a year, worst case)", rows)]
    for name, url in urls.items():
        timing = time_page(client, url)
        log(f"{name}: {timing.ms:.0f} ms, {timing.queries} queries, SQL {timing.sql_ms:.0f} ms")
        figures.append(
            figure(
                MEASURE,
                name,
                timing.ms,
                "ms",
                at_most=TARGET_MS,
                note=f"{timing.queries} queries, {timing.sql_ms:.0f} ms in SQL",
                extra={"queries": timing.queries, "sql_ms": round(timing.sql_ms, 1)},
            )
        )
    return figures


def run(quick: bool) -> list[Figure]:
    return count_the_log(5_000 if quick else 1_000_000) + time_pages()


if __name__ == "__main__":
    main(run, __doc__)
