"""Data for the browser test: realistic mail, moved along by real Postmark webhooks.

Messages are sent in the test process through anymail's test backend (as if
Postmark had answered with the given message ids); the webhooks are POSTed over
HTTP to the live server, through anymail's real Postmark view and our guard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from anymail.message import AnymailRecipientStatus
from django.conf import settings
from django.core.mail import EmailMessage
from wagtail.coreutils import get_supported_content_language_variant
from wagtail.models import Locale, Page

from tests.testapp.models import Invoice
from wagtail_maillog import label
from wagtail_maillog.models import Message, Recipient, SendAttempt

XSS = "<script>alert(1)</script>"
WEBHOOK_AUTH = ("hook", "secret")  # ANYMAIL["WEBHOOK_SECRET"] of tests/settings.py
HARD_BOUNCE_MTA = "smtp;550 5.1.1 The email account that you tried to reach does not exist."


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def send(
    to: list[str],
    esp_id: str,
    subject: str,
    body: str,
    *,
    related: Any = None,
    source: str | None = None,
) -> Message:
    msg = EmailMessage(subject, body, "Acme Members <office@acme.example>", to)
    if related is not None or source is not None:
        label(msg, related=related, source=source)
    msg.anymail_test_response = {
        "recipient_status": {
            addr: AnymailRecipientStatus(message_id=esp_id, status="queued")
            for addr in msg.recipients()
        }
    }
    msg.send()
    return Message.objects.get(pk=msg._maillog_pk)


def delivery(esp_id: str, email: str, at: datetime) -> dict[str, Any]:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": esp_id,
        "Recipient": email,
        "Tag": "",
        "DeliveredAt": _iso(at),
        "Details": "smtp;250 2.0.0 OK 1731100000 q7si123456ejr.42 - gsmtp",
        "Metadata": {},
    }


def opened(esp_id: str, email: str, at: datetime) -> dict[str, Any]:
    return {
        "RecordType": "Open",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": esp_id,
        "Recipient": email,
        "Tag": "",
        "FirstOpen": True,
        "ReceivedAt": _iso(at),
        "Platform": "Desktop",
        "ReadSeconds": 12,
        "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/128.4.0",
        "Metadata": {},
    }


def bounce(esp_id: str, email: str, at: datetime, bounce_id: int) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": esp_id,
        "ID": bounce_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "",
        "Email": email,
        "From": "office@acme.example",
        "BouncedAt": _iso(at),
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": HARD_BOUNCE_MTA,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "",
        "Metadata": {},
    }


@dataclass
class MailData:
    messages: dict[str, Message] = field(default_factory=dict)
    bounced: set[str] = field(default_factory=set)  # addresses with a bounce
    recipients: int = 0


def make_mail(base_url: str, now: datetime) -> MailData:
    """Twelve messages (thirteen recipient rows) sent over the last hours, in various states."""
    webhook = f"{base_url}/anymail/postmark/tracking/"
    inv41 = Invoice.objects.create(number="2026-041")
    inv42 = Invoice.objects.create(number="2026-042")
    inv43 = Invoice.objects.create(number="2026-043")

    # key, recipients, ESP id, subject, related object, source, sent (minutes ago),
    # events: (kind, address, minutes after sending)
    plan: list[tuple[str, list[str], str, str, Any, str | None, int, list[tuple[str, str, int]]]]
    plan = [
        (
            "receipt",
            ["ken.adams@example.org"],
            "pm-0012",
            "Receipt for your donation",
            None,
            None,
            3,
            [],
        ),
        (
            "minutes",
            ["judy.miller@example.com"],
            "pm-0011",
            "Board meeting minutes, 4 November",
            None,
            None,
            12,
            [("delivery", "judy.miller@example.com", 1)],
        ),
        (
            "renewal",
            ["ivan.petrov@example.net"],
            "pm-0010",
            "Your membership renewal",
            None,
            None,
            35,
            [("delivery", "ivan.petrov@example.net", 1), ("open", "ivan.petrov@example.net", 14)],
        ),
        (
            "event",
            ["heidi.klum@mailbox.example"],
            "pm-0009",
            "Event registration confirmed",
            None,
            None,
            48,
            [("bounce", "heidi.klum@mailbox.example", 1)],
        ),
        (
            "reminder",
            ["alice.martin@example.com"],
            "pm-0008",
            "Reminder: invoice 2026-041 is due",
            inv41,
            "invoice",
            62,
            [],
        ),
        (
            "xss",
            ["mallory@example.net"],
            "pm-0007",
            XSS,
            None,
            None,
            75,
            [("delivery", "mallory@example.net", 1)],
        ),
        (
            "newsletter",
            ["frank.castle@example.com", "grace.hopper@old-employer.example"],
            "pm-0006",
            "Newsletter — November",
            None,
            "newsletter",
            96,
            [
                ("delivery", "frank.castle@example.com", 2),
                ("bounce", "grace.hopper@old-employer.example", 3),
            ],
        ),
        (
            "reset",
            ["erin.brown@example.com"],
            "pm-0005",
            "Your password reset link",
            None,
            None,
            130,
            [("delivery", "erin.brown@example.com", 1)],
        ),
        (
            "welcome",
            ["dave.wilson@example.org"],
            "pm-0004",
            "Welcome to the members' area",
            None,
            None,
            185,
            [("delivery", "dave.wilson@example.org", 1), ("open", "dave.wilson@example.org", 42)],
        ),
        (
            "inv43",
            ["carol.white@exmaple.com"],
            "pm-0003",
            "Invoice 2026-043 from Acme Co.",
            inv43,
            "invoice",
            242,
            [("bounce", "carol.white@exmaple.com", 1)],
        ),
        (
            "inv42",
            ["bob.jones@example.com"],
            "pm-0002",
            "Invoice 2026-042 from Acme Co.",
            inv42,
            "invoice",
            243,
            [("delivery", "bob.jones@example.com", 1)],
        ),
        (
            "inv41",
            ["alice.martin@example.com"],
            "pm-0001",
            "Invoice 2026-041 from Acme Co.",
            inv41,
            "invoice",
            244,
            [("delivery", "alice.martin@example.com", 1), ("open", "alice.martin@example.com", 71)],
        ),
    ]
    data = MailData()
    sent_at: dict[str, datetime] = {}
    for key, to, esp_id, subject, related, source, minutes_ago, _events in plan:
        body = f"Dear member,\n\nAbout: {subject}\n\nKind regards,\nAcme Members"
        message = send(to, esp_id, subject, body, related=related, source=source)
        # as if sent back then: the log shows realistic times, events after sending
        sent_at[key] = at = now - timedelta(minutes=minutes_ago)
        Message.objects.filter(pk=message.pk).update(created_at=at)
        Recipient.objects.filter(message=message).update(created_at=at, status_at=at)
        SendAttempt.objects.filter(message=message).update(at=at)
        data.messages[key] = message
        data.recipients += len(to)

    bounce_id = 4323372036854775800
    with requests.Session() as session:
        session.auth = WEBHOOK_AUTH
        for key, _to, esp_id, _subject, _related, _source, _ago, events in plan:
            for kind, address, minutes_after in events:
                at = sent_at[key] + timedelta(minutes=minutes_after)
                if kind == "delivery":
                    payload = delivery(esp_id, address, at)
                elif kind == "open":
                    payload = opened(esp_id, address, at)
                else:
                    bounce_id += 1
                    payload = bounce(esp_id, address, at, bounce_id)
                    data.bounced.add(address)
                response = session.post(webhook, json=payload, timeout=10)
                assert response.status_code == 200, (kind, address, response.text)
    return data


def ensure_wagtail_root() -> None:
    """The root page Wagtail's dashboard needs: an earlier transactional test may
    have flushed the database, and with it what Wagtail's migrations created."""
    if Page.objects.filter(depth=1).exists():
        return
    locale, _created = Locale.objects.get_or_create(
        language_code=get_supported_content_language_variant(settings.LANGUAGE_CODE)
    )
    Page.add_root(instance=Page(title="Root", slug="root", locale=locale))
