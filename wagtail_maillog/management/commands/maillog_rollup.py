"""``manage.py maillog_rollup``: count the deliverability figures now, or rebuild them."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...deliverability.rollup import catch_up, rebuild


class Command(BaseCommand):
    help = (
        "Count what the mail log gained into the deliverability figures (what the "
        "scheduled task does every minute), or --rebuild them from the log."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Recount from the log the days it still holds whole (after the purge's cutoff)",
        )
        parser.add_argument(
            "--since", help="With --rebuild: recount the days from this one (YYYY-MM-DD)"
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="With --rebuild: recount every day from what the log holds (older counts go)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["rebuild"]:
            if options["since"] or options["all"]:
                raise CommandError("--since and --all go with --rebuild")
            run = catch_up()
            self.stdout.write(
                f"Counted events {run.events[0] + 1}..{run.events[1]} and send attempts "
                f"{run.attempts[0] + 1}..{run.attempts[1]}."
            )
            return
        since = None
        if options["since"]:
            try:
                since = date.fromisoformat(options["since"])
            except ValueError:
                raise CommandError("--since takes a date: YYYY-MM-DD") from None
        result = rebuild(since=since, everything=options["all"])
        start = result["since"]
        self.stdout.write(
            "Rebuilt the deliverability figures "
            + (f"from {start:%Y-%m-%d}" if start else "for every day the log holds")
            + f" ({result['removed']} old rows replaced)."
        )
