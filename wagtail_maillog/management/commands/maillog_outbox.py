"""``manage.py maillog_outbox``: print what is in the outbox."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from ...models import OutboxItem, SendState


class Command(BaseCommand):
    help = "List the mail in the outbox (waiting, scheduled, retrying, failed)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--state", choices=SendState.values, action="append")
        parser.add_argument("--connector", action="append")
        parser.add_argument("--format", choices=["table", "jsonl"], default="table")

    def handle(self, *args: Any, **options: Any) -> None:
        items = OutboxItem.objects.select_related("message").order_by("next_attempt_at", "pk")
        if options["state"]:
            items = items.filter(state__in=options["state"])
        if options["connector"]:
            items = items.filter(connector__in=options["connector"])
        count = 0
        for item in items.iterator(chunk_size=500):
            count += 1
            to = ", ".join(item.message.recipients.values_list("address", flat=True))
            row = {
                "id": item.pk,
                "message_id": item.message_id,
                "state": item.state,
                "connector": item.connector,
                "attempts": item.attempts,
                "next_attempt_at": item.next_attempt_at.isoformat()
                if item.next_attempt_at
                else None,
                "to": to,
                "subject": item.message.subject,
                "last_error": item.last_error,
            }
            if options["format"] == "jsonl":
                self.stdout.write(json.dumps(row, ensure_ascii=False))
            else:
                nxt = f"{item.next_attempt_at:%Y-%m-%d %H:%M:%S}" if item.next_attempt_at else "-"
                self.stdout.write(
                    f"{item.pk:>6}  {item.state:<18} {item.connector:<12} "
                    f"{item.attempts:>2}  {nxt:<19}  {to[:40]:<40}  {item.message.subject[:50]}"
                )
                if item.last_error:
                    self.stdout.write(f"        last error: {item.last_error[:200]}")
        if options["format"] == "table":
            self.stdout.write(f"{count} in the outbox")
