"""``manage.py maillog_sync_members``: give every registered member's address a row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...addresses.members import registered, sync


class Command(BaseCommand):
    help = "Create address rows (unconfirmed) for members made before wagtail-maillog."

    def handle(self, *args: Any, **options: Any) -> None:
        if not registered():
            self.stdout.write("No member model is registered (see docs/addresses.md).")
            return
        self.stdout.write(f"{sync()} member addresses have a row.")
