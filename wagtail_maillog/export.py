"""The log as rows for scripts: JSON lines or CSV, one row per recipient.

This is a public, stable interface: keys are only ever added, never renamed.

Subjects, addresses and ESP bounce texts come from outside. A spreadsheet
runs a CSV cell that starts like a formula, so CSV cells are made inert
(:func:`inert`, OWASP's CSV-injection rule); JSON lines keep the exact text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from django.db.models import Count, QuerySet

from .models import Recipient

FIELDS = [
    "message_id",
    "esp_message_id",
    "created_at",
    "to",
    "role",
    "subject",
    "status",
    "status_at",
    "opened",
    "reason",
    "source",
    "esp",
    "related",
    "events",
]


def export_queryset(
    statuses: Iterable[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    sources: Iterable[str] = (),
) -> QuerySet[Recipient]:
    """Recipients to export, oldest first, with what a row needs joined in."""
    qs = Recipient.objects.all()
    if statuses:
        qs = qs.filter(status__in=list(statuses))
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if sources:
        qs = qs.filter(message__source__in=list(sources))
    return (
        qs.select_related("message", "message__content_type")
        .annotate(event_count=Count("events"))
        .order_by("created_at", "pk")
    )


#: A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets
#: (OWASP: = + - @ TAB CR); the full-width = + - @ as well, as a precaution.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def inert(value: Any) -> Any:
    """A CSV cell no spreadsheet runs as a formula: text that starts like one, also after
    leading spaces or line breaks (which spreadsheets may trim), gets a ``'`` in front.

    Other values, numbers included, are returned unchanged.
    """
    if isinstance(value, str) and (
        value.startswith(FORMULA_STARTS) or value.lstrip().startswith(FORMULA_STARTS)
    ):
        return "'" + value
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def rows(queryset: QuerySet[Recipient], chunk_size: int = 2000) -> Iterator[dict[str, Any]]:
    """Stream export rows without loading the queryset into memory."""
    for r in queryset.iterator(chunk_size=chunk_size):
        m = r.message
        related = None
        if m.content_type_id and m.object_id:
            related = f"{m.content_type.app_label}.{m.content_type.model}:{m.object_id}"
        yield {
            "message_id": m.pk,
            "esp_message_id": r.esp_message_id or None,
            "created_at": _iso(r.created_at),
            "to": r.address,
            "role": r.role,
            "subject": r.subject,  # a batch recipient's own (merging.py)
            "status": r.status,
            "status_at": _iso(r.status_at),
            "opened": r.opened_at is not None,
            "reason": r.reason,
            "source": m.source,
            "esp": m.esp_name,
            "related": related,
            "events": getattr(r, "event_count", None),
        }


class _Echo:
    """A file-like object whose ``write`` hands the text back (for streaming)."""

    def write(self, value: str) -> str:
        return value


def lines(items: Iterable[dict[str, Any]], fmt: str = "jsonl") -> Iterator[str]:
    """The rows as text, one line at a time: ``"jsonl"`` or ``"csv"`` (with a header).

    CSV cells go through :func:`inert`; JSON lines keep every value as it is.
    """
    if fmt == "csv":
        writer = csv.DictWriter(_Echo(), fieldnames=FIELDS, extrasaction="ignore")
        yield writer.writeheader()
        for item in items:
            yield writer.writerow({key: inert(value) for key, value in item.items()})
    else:
        for item in items:
            yield json.dumps(item, ensure_ascii=False) + "\n"


def write(items: Iterable[dict[str, Any]], stream: IO[str], fmt: str = "jsonl") -> int:
    """Write the rows to ``stream``; returns how many rows were written."""
    count = -1 if fmt == "csv" else 0
    for line in lines(items, fmt):
        stream.write(line)
        count += 1
    return count
