"""``manage.py maillog_sync_members``: give every registered member's address a row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...addresses.members import registered, sync
from ...checks import DOCS_URL


class Command(BaseCommand):
    help = "Create address rows (unconfirmed) for members made before wagtail-maillog."

    def handle(self, *args: Any, **options: Any) -> None:
        if not registered():
            self.stdout.write(f"No member model is registered (see {DOCS_URL}addresses.md).")
            return
        self.stdout.write(f"{sync()} member addresses have a row.")
