"""``manage.py maillog_retry``: send outbox mail again now (by id or by filter)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...models import OutboxItem, SendState
from ...outbox.worker import retry_now


class Command(BaseCommand):
    help = "Put outbox mail back in the queue, due now (also after max attempts)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="Outbox item ids")
        parser.add_argument("--state", choices=SendState.values, action="append")
        parser.add_argument("--connector", action="append")

    def handle(self, *args: Any, **options: Any) -> None:
        if not (options["ids"] or options["state"] or options["connector"]):
            raise CommandError("Give outbox ids, or --state/--connector (e.g. --state failed).")
        items = OutboxItem.objects.all()
        if options["ids"]:
            items = items.filter(pk__in=options["ids"])
        if options["state"]:
            items = items.filter(state__in=options["state"])
        if options["connector"]:
            items = items.filter(connector__in=options["connector"])
        count = retry_now(list(items.only("pk")))
        noun = "mail" if count == 1 else "mails"
        self.stdout.write(f"{count} {noun} will be retried now.")
