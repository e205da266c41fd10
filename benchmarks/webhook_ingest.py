"""Webhook ingest: tracking events POSTed through anymail's real SparkPost view.

    python -m benchmarks.webhook_ingest [--messages 10000] [--batch 1000] [--quick]

Prints events/s, SQL queries per POST, and the raw floor: plain ``sqlite3``
``executemany`` inserting as many event rows into a bare table (SQLite only).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sqlite3
import tempfile
import time
from typing import Any


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0) if _migrated() else None
    call_command("migrate", verbosity=0)


def _migrated() -> bool:
    from django.db import connection

    return "wagtail_maillog_message" in connection.introspection.table_names()


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


def raw_floor(rows: int) -> float:
    """Seconds for plain sqlite3 executemany of ``rows`` event-like rows into a bare table."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(os.path.join(tmp, "floor.sqlite3"))
        db.execute(
            "CREATE TABLE event (id INTEGER PRIMARY KEY, recipient_id INT, esp_name TEXT, "
            "esp_message_id TEXT, address TEXT, event_type TEXT, timestamp TEXT, "
            "event_id TEXT, dedupe_key TEXT UNIQUE, raw TEXT)"
        )
        data = [
            (
                i,
                "SparkPost",
                f"tx-{i}",
                f"u{i}@example.com",
                "delivered",
                "2026-01-01",
                f"ev-{i}",
                f"key-{i}",
                json.dumps({"i": i}),
            )
            for i in range(rows)
        ]
        start = time.perf_counter()
        db.executemany(
            "INSERT OR IGNORE INTO event (recipient_id, esp_name, esp_message_id, address, "
            "event_type, timestamp, event_id, dedupe_key, raw) VALUES (?,?,?,?,?,?,?,?,?)",
            data,
        )
        db.commit()
        return time.perf_counter() - start


def run(messages: int, batch: int) -> dict[str, Any]:
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from wagtail_maillog.models import Event, Recipient

    pairs = make_messages(messages)
    client = Client()
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"hook:secret").decode()}
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
    result = {
        "database": connection.vendor,
        "cores": os.cpu_count(),
        "events": len(pairs),
        "batch": batch,
        "events_per_s": round(len(pairs) / elapsed),
        "queries_per_post_max": max(queries),
    }
    if connection.vendor == "sqlite":
        floor = raw_floor(len(pairs))
        result["raw_floor_events_per_s"] = round(len(pairs) / floor)
        result["ratio_to_floor"] = round((len(pairs) / floor) / (len(pairs) / elapsed), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--quick", action="store_true", help="1,000 events: a smoke run")
    args = parser.parse_args()
    messages = 1_000 if args.quick else args.messages
    result = run(messages, min(args.batch, messages))
    for key, value in result.items():
        print(f"{key:>24}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
