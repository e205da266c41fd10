"""``manage.py maillog_process_outbox``: send what is due once (cron, or without qcluster)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...outbox.worker import process_outbox


class Command(BaseCommand):
    help = "Hand due outbox mail to its connectors once, then stop."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--time-budget", type=float, default=50.0)

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(process_outbox(time_budget=options["time_budget"]))
