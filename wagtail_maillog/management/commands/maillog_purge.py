"""``manage.py maillog_purge``: delete mail history past the retention period."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...purge import cutoff, purge


class Command(BaseCommand):
    help = "Delete mail log history older than WAGTAIL_MAILLOG['RETENTION_DAYS'], in batches."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, help="Override the retention period (days)")
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument(
            "--mode", choices=["messages", "events"], help="Override WAGTAIL_MAILLOG['PURGE_MODE']"
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would go")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["days"] is not None and options["days"] < 0:
            raise CommandError("--days must be 0 or more")
        before = cutoff(options["days"])
        if before is None:
            self.stdout.write("Retention is off (RETENTION_DAYS is None): nothing to purge.")
            return
        result = purge(
            before=before,
            batch_size=options["batch_size"],
            mode=options["mode"],
            dry_run=options["dry_run"],
        )
        verb = "Would purge" if options["dry_run"] else "Purged"
        self.stdout.write(
            f"{verb} {result.messages} messages and {result.events} events "
            f"older than {before:%Y-%m-%d %H:%M} ({result.batches} batches)."
        )
