"""``manage.py maillog_scrub``: cut secrets out of mail already in the log."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...models import Event, Message
from ...redaction import scrub


class Command(BaseCommand):
    help = (
        "Remove the bodies of sensitive mail (SENSITIVE_SOURCES) and the one-time tokens "
        "(password reset, confirmation and unsubscribe links, REDACT_PATTERNS) from stored "
        "bodies, headers, clicked URLs and the events' payloads. Migrations 0008 and 0021 "
        "ran it once; run it again after "
        "adding to SENSITIVE_SOURCES or REDACT_PATTERNS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        changed = scrub(Message, Event)
        self.stdout.write(f"Scrubbed {changed} rows.")
