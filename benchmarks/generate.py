"""Fill the mail log with realistic history, fast (set-based, streamed).

    DJANGO_SETTINGS_MODULE=... python -m benchmarks.generate --messages 1000000

Rows are written in chunks with ``executemany`` (wagtail_maillog.bulk), so a
million messages take memory for one chunk only. Statuses and events follow a
realistic mix: most delivered, many opened, some clicked, a few bounced,
deferred, complained or rejected.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import timedelta
from typing import Any

#: (final status, share, event types that led there)
MIX: list[tuple[str, float, tuple[str, ...]]] = [
    ("delivered", 0.45, ("delivered",)),
    ("opened", 0.30, ("delivered", "opened")),
    ("clicked", 0.10, ("delivered", "opened", "clicked")),
    ("bounced", 0.05, ("deferred", "bounced")),
    ("deferred", 0.03, ("deferred",)),
    ("invalid", 0.02, ("bounced",)),
    ("complained", 0.01, ("delivered", "complained")),
    ("rejected", 0.01, ("rejected",)),
    ("queued", 0.03, ()),
]
SOURCES = ["newsletter", "invoice", "welcome", "password_reset", "form", "system"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "post.example"]


def _pick(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    roll = rng.random()
    for status, share, events in MIX:
        roll -= share
        if roll <= 0:
            return status, events
    return MIX[0][0], MIX[0][2]


def generate(messages: int, chunk: int = 5000, days: int = 60, seed: int = 1) -> dict[str, Any]:
    """Create ``messages`` messages, one recipient each, with their events."""
    from django.db import transaction
    from django.utils import timezone

    from wagtail_maillog.bulk import insert_ignoring_conflicts
    from wagtail_maillog.models import Event, Message, Recipient

    rng = random.Random(seed)
    now = timezone.now()
    start = time.perf_counter()
    first_pk = (Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    made = events_made = 0
    while made < messages:
        n = min(chunk, messages - made)
        created = [now - timedelta(seconds=rng.randrange(days * 86400)) for _ in range(n)]
        with transaction.atomic():
            Message.objects.bulk_create(
                [
                    Message(
                        pk=first_pk + made + i,
                        created_at=created[i],
                        subject=f"{rng.choice(SOURCES).title()} #{first_pk + made + i}",
                        from_email="site@example.com",
                        source=rng.choice(SOURCES),
                        esp_name="Postmark",
                        body_stored=True,
                        body_text="Hello",
                    )
                    for i in range(n)
                ],
                batch_size=1000,
            )
            recipients, events = [], []
            for i in range(n):
                pk = first_pk + made + i
                status, trail = _pick(rng)
                at = created[i] + timedelta(seconds=30)
                esp_id = f"gen-{pk}"
                address = f"user{rng.randrange(messages * 2)}@{rng.choice(DOMAINS)}"
                recipients.append(
                    Recipient(
                        pk=pk,
                        message_id=pk,
                        created_at=created[i],
                        address=address,
                        status=status,
                        status_at=at,
                        opened_at=at if status in ("opened", "clicked") else None,
                        esp_message_id=esp_id,
                    )
                )
                for n_event, kind in enumerate(trail):
                    events.append(
                        Event(
                            recipient_id=pk,
                            esp_name="Postmark",
                            esp_message_id=esp_id,
                            address=address,
                            event_type=kind,
                            timestamp=at + timedelta(seconds=n_event),
                            received_at=at + timedelta(seconds=n_event),
                            event_id=f"{esp_id}-{n_event}",
                            dedupe_key=f"gen:{esp_id}:{n_event}",
                            raw={"RecordType": kind, "MessageID": esp_id},
                        )
                    )
            insert_ignoring_conflicts(recipients)
            insert_ignoring_conflicts(events)
        made += n
        events_made += len(events)
    return {
        "messages": made,
        "events": events_made,
        "seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import django

    django.setup()
    print(generate(args.messages, chunk=args.chunk, seed=args.seed))


if __name__ == "__main__":
    main()
