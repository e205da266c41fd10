"""Webhook ingest: tracking events POSTed through anymail's real SparkPost view.

    python -m benchmarks.webhook_ingest [--quick]

10,000 sent messages (2,000 with --quick), then a SparkPost ``delivery`` event
for each, 1,000 per POST, with basic auth: anymail's parsing, our guard, the
per-request buffer and the set-based write are all measured. Figures:
events/s, SQL queries per POST, and the raw floor of the database, printed as
a ratio: as many event rows written the fastest plain way into a bare table
(``sqlite3`` ``executemany`` on SQLite, psycopg's ``COPY`` on PostgreSQL,
MySQLdb's ``executemany``, multi-row INSERTs, on MariaDB).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import tempfile
import time
from typing import Any

from .harness import Figure, figure, log, main


def make_messages(count: int) -> list[tuple[str, str]]:
    """``count`` sent messages (one recipient each), written set-based."""
    from django.utils import timezone

    from wagtail_maillog.bulk import insert_ignoring_conflicts
    from wagtail_maillog.models import Message, Recipient

    now = timezone.now()
    messages = [
        Message(created_at=now, subject=f"Bench {i}", esp_name="SparkPost") for i in range(count)
    ]
    Message.objects.bulk_create(messages, batch_size=1000)
    pks = list(Message.objects.order_by("pk").values_list("pk", flat=True))[-count:]
    pairs = [(f"tx-{pk}", f"user{pk}@example.com") for pk in pks]
    insert_ignoring_conflicts(
        [
            Recipient(
                message_id=pk,
                created_at=now,
                address=addr,
                status="queued",
                status_at=now,
                esp_message_id=tx,
            )
            for pk, (tx, addr) in zip(pks, pairs, strict=True)
        ]
    )
    return pairs


def sparkpost_batch(pairs: list[tuple[str, str]], start: int) -> list[dict[str, Any]]:
    return [
        {
            "msys": {
                "message_event": {
                    "type": "delivery",
                    "event_id": f"ev-{start + i}",
                    "transmission_id": tx,
                    "raw_rcpt_to": addr,
                    "rcpt_to": addr,
                    "timestamp": str(1_700_000_000 + i),
                }
            }
        }
        for i, (tx, addr) in enumerate(pairs)
    ]


def _floor_rows(rows: int) -> list[tuple[Any, ...]]:
    return [
        (
            i,
            "SparkPost",
            f"tx-{i}",
            f"u{i}@example.com",
            "delivered",
            "2026-01-01 00:00:00+00",
            f"ev-{i}",
            f"key-{i}",
            json.dumps({"i": i}),
        )
        for i in range(rows)
    ]


def raw_floor_sqlite(rows: int) -> float:
    """Seconds for plain sqlite3 executemany of ``rows`` event-like rows into a bare table."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(os.path.join(tmp, "floor.sqlite3"))
        db.execute(
            "CREATE TABLE event (id INTEGER PRIMARY KEY, recipient_id INT, esp_name TEXT, "
            "esp_message_id TEXT, address TEXT, event_type TEXT, timestamp TEXT, "
            "event_id TEXT, dedupe_key TEXT UNIQUE, raw TEXT)"
        )
        data = _floor_rows(rows)
        start = time.perf_counter()
        db.executemany(
            "INSERT OR IGNORE INTO event (recipient_id, esp_name, esp_message_id, address, "
            "event_type, timestamp, event_id, dedupe_key, raw) VALUES (?,?,?,?,?,?,?,?,?)",
            data,
        )
        db.commit()
        return time.perf_counter() - start


def raw_floor_postgres(rows: int) -> float:
    """Seconds for psycopg's COPY of ``rows`` event-like rows into a bare table, committed."""
    from django.db import connection

    data = _floor_rows(rows)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE floor_event (id bigserial PRIMARY KEY, recipient_id bigint, "
            "esp_name varchar(64), esp_message_id varchar(255), address varchar(254), "
            "event_type varchar(32), timestamp timestamptz, event_id varchar(255), "
            "dedupe_key varchar(64) UNIQUE, raw jsonb)"
        )
        start = time.perf_counter()
        with cursor.cursor.copy(
            "COPY floor_event (recipient_id, esp_name, esp_message_id, address, event_type, "
            "timestamp, event_id, dedupe_key, raw) FROM STDIN"
        ) as copy:
            for row in data:
                copy.write_row(row)
        seconds = time.perf_counter() - start  # autocommit: committed when the COPY ends
        cursor.execute("DROP TABLE floor_event")
    return seconds


def raw_floor_mysql(rows: int) -> float:
    """Seconds for MySQLdb's executemany of ``rows`` event-like rows into a bare InnoDB
    table, in one transaction: MySQLdb sends multi-row INSERTs of up to 64 KB each."""
    from django.db import connection, transaction

    data = [(*row[:5], "2026-01-01 00:00:00", *row[6:]) for row in _floor_rows(rows)]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE floor_event (id bigint AUTO_INCREMENT PRIMARY KEY, recipient_id bigint, "
            "esp_name varchar(64), esp_message_id varchar(255), address varchar(254), "
            "event_type varchar(32), timestamp datetime(6), event_id varchar(255), "
            "dedupe_key varchar(64) UNIQUE, raw longtext CHECK (json_valid(raw))) ENGINE=InnoDB"
        )
        try:
            start = time.perf_counter()
            with transaction.atomic():
                cursor.cursor.executemany(
                    "INSERT IGNORE INTO floor_event (recipient_id, esp_name, esp_message_id, "
                    "address, event_type, timestamp, event_id, dedupe_key, raw) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    data,
                )
            seconds = time.perf_counter() - start
        finally:
            cursor.execute("DROP TABLE floor_event")
    return seconds


def raw_floor(rows: int) -> tuple[float, str]:
    """The database's own limit for as many rows: seconds, and how it was measured."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return raw_floor_postgres(rows), "psycopg COPY into a bare table"
    if connection.vendor == "mysql":
        return raw_floor_mysql(rows), "MySQLdb executemany into a bare table"
    return raw_floor_sqlite(rows), "sqlite3 executemany into a bare table"


MEASURE = "webhook ingest"


def ingest(messages: int, batch: int) -> dict[str, Any]:
    """POST ``messages`` delivery events, ``batch`` per request; events/s and queries."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from wagtail_maillog.models import Event, Recipient

    pairs = make_messages(messages)
    client = Client()
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"hook:secret").decode()}
    # Warm-up, not timed: the first request imports the URL configuration (anymail's
    # webhook modules, boto3), ~0.3 s once per process, not per POST. Its one orphan
    # event is removed again.
    warm_up = json.dumps(sparkpost_batch([("tx-warm-up", "warm-up@example.com")], 10**9))
    response = client.post(
        "/anymail/sparkpost/tracking/", data=warm_up, content_type="application/json", **auth
    )
    assert response.status_code == 200, response.content[:500]
    Event.objects.all().delete()
    queries, elapsed = [], 0.0
    for start in range(0, len(pairs), batch):
        body = json.dumps(sparkpost_batch(pairs[start : start + batch], start))
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            response = client.post(
                "/anymail/sparkpost/tracking/", data=body, content_type="application/json", **auth
            )
            elapsed += time.perf_counter() - t0
        assert response.status_code == 200, response.content[:500]
        queries.append(len(captured))
    stored = Event.objects.count()
    assert stored == len(pairs), (stored, len(pairs))
    assert Recipient.objects.filter(status="delivered").count() == len(pairs)
    return {
        "events": len(pairs),
        "events_per_s": len(pairs) / elapsed,
        "queries_per_post_max": max(queries),
    }


def run(quick: bool) -> list[Figure]:
    events = 2_000 if quick else 10_000
    result = ingest(events, 1_000)
    log(f"{events:,} events in POSTs of 1,000: {result['events_per_s']:,.0f} events/s")
    floor_seconds, how = raw_floor(events)
    floor = events / floor_seconds
    return [
        figure(MEASURE, "events stored", events),
        figure(MEASURE, "events/s", result["events_per_s"], "events/s", at_least=10_000),
        figure(
            MEASURE,
            "SQL queries per 1,000-event POST",
            result["queries_per_post_max"],
            "queries",
            at_most=20,
        ),
        figure(MEASURE, "raw floor (bare table)", floor, "events/s", note=how),
        figure(MEASURE, "raw floor / ingest", floor / result["events_per_s"], "×"),
    ]


if __name__ == "__main__":
    main(run, __doc__)
