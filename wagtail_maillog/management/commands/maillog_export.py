"""``manage.py maillog_export``: the log as JSON lines (default) or CSV on stdout."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from ...export import export_queryset, rows, write
from ...status import Status


def _moment(value: str) -> datetime:
    """An ISO date or date-time; naive values are in the site's time zone."""
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"Not an ISO date or date-time: {value!r}")
        parsed = datetime.combine(day, time.min)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class Command(BaseCommand):
    help = "Write the mail log to stdout, one line per recipient (JSON lines or CSV)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--status", help="Comma-separated statuses, e.g. bounced,invalid")
        parser.add_argument("--since", help="Only mail created at or after this ISO date/time")
        parser.add_argument("--until", help="Only mail created before this ISO date/time")
        parser.add_argument("--source", help="Comma-separated sources, e.g. newsletter,invoice")

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = _list(options["status"])
        unknown = sorted(set(statuses) - set(Status.values))
        if unknown:
            raise CommandError(
                f"Unknown status {', '.join(unknown)}; use one of {', '.join(Status.values)}"
            )
        queryset = export_queryset(
            statuses=statuses,
            since=_moment(options["since"]) if options["since"] else None,
            until=_moment(options["until"]) if options["until"] else None,
            sources=_list(options["source"]),
        )
        write(rows(queryset), self.stdout, options["format"])
