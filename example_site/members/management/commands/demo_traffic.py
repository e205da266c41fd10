"""Send a mail to a random member every few seconds, so the log keeps moving.

With the outbox (the demo's EMAIL_BACKEND), each mail is queued and the
django-q2 cluster (``manage.py qcluster``) sends it; its delivery events arrive
later through django-q2 too: watch the statuses change in the mail log.
"""

from __future__ import annotations

import random
import time
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.management.base import BaseCommand, CommandError, CommandParser

from members.models import Member
from wagtail_maillog import label
from wagtail_maillog.checks import OUTBOX_BACKEND

KINDS: list[tuple[str, str, str]] = [
    # source, subject, body
    ("newsletter", "Club news: spring programme", "Our spring programme is out. See you there!"),
    ("reminder", "Reminder: general assembly on Thursday", "Doors open at 19:00."),
    ("receipt", "Receipt for your payment", "Thank you, we have received your payment."),
    ("event", "You are registered for the summer trip", "We will send practical details soon."),
]


class Command(BaseCommand):
    help = "Send one realistic mail every --interval seconds, --count times."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=10.0, help="Seconds between mails.")
        parser.add_argument("--count", type=int, default=30, help="How many mails to send.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed (repeatable).")

    def handle(
        self, *args: Any, interval: float, count: int, seed: int | None, **options: Any
    ) -> None:
        members = list(Member.objects.all())
        if not members:
            raise CommandError("No members: run `manage.py seed_demo` first.")
        rng = random.Random(seed)
        done = "queued" if settings.EMAIL_BACKEND == OUTBOX_BACKEND else "sent"
        for number in range(1, count + 1):
            member = rng.choice(members)
            source, subject, body = rng.choice(KINDS)
            message = EmailMultiAlternatives(
                subject=subject,
                body=f"Hi {member.name.split()[0]},\n\n{body}\n",
                to=[f"{member.name} <{member.email}>"],
            )
            message.attach_alternative(
                f"<p>Hi {member.name.split()[0]},</p><p>{body}</p>", "text/html"
            )
            # Newsletters leave through their own connector (see CONNECTORS).
            connector = "newsletter" if source == "newsletter" else None
            try:
                label(message, source=source, related=member, connector=connector).send()
                outcome = done
            except AnymailRecipientsRefused:
                outcome = "refused"
            except AnymailAPIError:  # only without the outbox, which would retry it
                outcome = "failed"
            self.stdout.write(f"[{number}/{count}] {outcome}: {subject!r} to {member.email}")
            self.stdout.flush()
            if number < count:
                time.sleep(interval)
