"""A simulated ESP for the demo and the tests.

``EMAIL_BACKEND = "wagtail_maillog.sandbox.SandboxBackend"`` accepts every
message like a real ESP (one message id for all recipients, as Postmark and
SparkPost do), then emits realistic events through anymail's real
``tracking`` signal, ``SANDBOX_EVENT_DELAY`` seconds later (through a one-off
django-q2 schedule, so a running ``qcluster`` is needed, and its scheduler
wakes every 30 s: events come 0–30 s after the delay; 0 emits them at once,
None never).

The recipient's domain decides what happens::

    *@bounce.example       deferred, then bounced (550 5.1.1)
    *@invalid.example      bounced, reject reason "invalid"
    *@spam.example         delivered, then complained
    *@unsubscribe.example  delivered, then unsubscribed
    *@defer.example        deferred (and nothing more)
    *@reject.example       refused at send time (status "rejected")
    *@unreachable.example  the API call fails (HTTP 503), so the outbox retries it
    anything else          delivered; some opened, some of those clicked
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import requests
from anymail.backends.base import AnymailBaseBackend, BasePayload
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from anymail.signals import AnymailTrackingEvent, tracking
from django.utils import timezone

from .conf import get_setting
from .events import collecting, ingest

ESP_NAME = "Sandbox"
USER_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Mail"


def _chance(address: str, message_id: str, salt: str) -> float:
    """A stable number in [0, 1) per recipient, so runs are reproducible."""
    digest = hashlib.sha256(f"{salt}:{message_id}:{address}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def plan_events(message_id: str, address: str, subject: str = "") -> list[dict[str, Any]]:
    """The events the sandbox will report for one recipient, as plain data."""
    domain = address.rsplit("@", 1)[-1].lower()
    base = {"message_id": message_id, "recipient": address}

    def ev(kind: str, offset: int, **extra: Any) -> dict[str, Any]:
        return {**base, "event_type": kind, "offset": offset, **extra}

    if domain == "bounce.example":
        return [
            ev("deferred", 1, mta_response="451 4.2.0 Mailbox temporarily unavailable"),
            ev(
                "bounced",
                3,
                reject_reason="bounced",
                mta_response=f"550 5.1.1 <{address}>: Recipient address rejected",
                description="The mailbox does not accept mail.",
            ),
        ]
    if domain == "invalid.example":
        return [
            ev(
                "bounced",
                1,
                reject_reason="invalid",
                mta_response="550 5.1.1 User unknown",
                description="No such user.",
            )
        ]
    if domain == "spam.example":
        return [
            ev("delivered", 1, mta_response="250 2.0.0 OK"),
            ev("complained", 4, description="The recipient marked the mail as spam."),
        ]
    if domain == "unsubscribe.example":
        return [
            ev("delivered", 1, mta_response="250 2.0.0 OK"),
            ev("unsubscribed", 4, description="Unsubscribed via list-unsubscribe."),
        ]
    if domain == "defer.example":
        return [ev("deferred", 1, mta_response="421 4.7.0 Try again later")]
    events = [ev("delivered", 1, mta_response=f"250 2.0.0 OK: queued as {message_id[-8:]}")]
    if _chance(address, message_id, "open") < 0.6:
        events.append(ev("opened", 3, user_agent=USER_AGENT))
        if _chance(address, message_id, "click") < 0.4:
            events.append(
                ev(
                    "clicked",
                    5,
                    user_agent=USER_AGENT,
                    click_url="https://www.example.com/news?utm_source=mail",
                )
            )
    return events


def emit(planned: list[dict[str, Any]], sent_at: str | None = None) -> None:
    """Send planned events through anymail's ``tracking`` signal, stored as one batch."""
    start = datetime.fromisoformat(sent_at) if sent_at else timezone.now()
    with collecting() as items:
        for item in planned:
            data = dict(item)
            offset = data.pop("offset", 0)
            timestamp = start + timedelta(seconds=offset)
            event_id = f"sbx-ev-{uuid.uuid5(uuid.NAMESPACE_URL, repr(sorted(item.items())))}"
            tracking.send(
                sender=SandboxBackend,
                event=AnymailTrackingEvent(
                    timestamp=timestamp,
                    event_id=event_id,
                    esp_event={**data, "timestamp": timestamp.isoformat(), "id": event_id},
                    **data,
                ),
                esp_name=ESP_NAME,
            )
    ingest(items)


def _unavailable() -> requests.Response:
    """A real-looking HTTP 503 answer (anymail's errors describe their response)."""
    response = requests.Response()
    response.status_code = 503
    response.reason = "Service Unavailable"
    response._content = b'{"error": "sandbox: service unavailable"}'
    response.headers["Content-Type"] = "application/json"
    response.headers["Retry-After"] = "30"
    return response


class SandboxPayload(BasePayload):
    def init_payload(self) -> None:
        self.recipients: list[str] = []

    def set_from_email(self, email: Any) -> None:
        pass

    def add_recipient(self, recipient_type: str, email: Any) -> None:
        self.recipients.append(email.addr_spec)

    def set_subject(self, subject: str) -> None:
        pass

    def set_reply_to(self, emails: Any) -> None:
        pass

    def set_extra_headers(self, headers: Any) -> None:
        pass

    def set_text_body(self, body: str) -> None:
        pass

    def set_html_body(self, body: str) -> None:
        pass

    def add_alternative(self, content: str, mimetype: str) -> None:
        pass

    def add_attachment(self, attachment: Any) -> None:
        pass

    def set_metadata(self, metadata: Any) -> None:
        pass

    def set_tags(self, tags: Any) -> None:
        pass

    def set_track_clicks(self, track_clicks: Any) -> None:
        pass

    def set_track_opens(self, track_opens: Any) -> None:
        pass

    def set_merge_data(self, merge_data: Any) -> None:
        pass

    def set_merge_metadata(self, merge_metadata: Any) -> None:
        pass

    def set_merge_headers(self, merge_headers: Any) -> None:
        pass

    def set_merge_global_data(self, merge_global_data: Any) -> None:
        pass

    def set_esp_extra(self, extra: Any) -> None:
        pass


class SandboxBackend(AnymailBaseBackend):
    """An anymail backend that sends nothing and reports realistic events."""

    esp_name = ESP_NAME

    def build_message_payload(self, message: Any, defaults: Any) -> SandboxPayload:
        return SandboxPayload(message, defaults, self)

    def post_to_esp(self, payload: SandboxPayload, message: Any) -> dict[str, Any]:
        if any(a.lower().endswith("@unreachable.example") for a in payload.recipients):
            raise AnymailAPIError(
                "Sandbox: 503 Service Unavailable (the ESP is down for *@unreachable.example)",
                status_code=503,
                response=_unavailable(),
            )
        message_id = f"sbx-{uuid.uuid4().hex}"
        statuses = {
            address: AnymailRecipientStatus(
                message_id=message_id,
                status="rejected" if address.lower().endswith("@reject.example") else "queued",
            )
            for address in payload.recipients
        }
        planned = [
            event
            for address, st in statuses.items()
            if st.status == "queued"
            for event in plan_events(message_id, address, str(message.subject or ""))
        ]
        return {"message_id": message_id, "statuses": statuses, "planned": planned}

    def parse_recipient_status(
        self, response: dict[str, Any], payload: SandboxPayload, message: Any
    ) -> dict[str, AnymailRecipientStatus]:
        message.sandbox_planned_events = response["planned"]
        return response["statuses"]

    def run_post_send(self, message: Any) -> None:
        super().run_post_send(message)
        schedule_events(getattr(message, "sandbox_planned_events", []))


def schedule_events(planned: list[dict[str, Any]]) -> None:
    """Emit now, or later through a one-off django-q2 schedule."""
    delay = get_setting("SANDBOX_EVENT_DELAY")
    if delay is None or not planned:
        return
    if delay <= 0:
        emit(planned)
        return
    from django_q.models import Schedule

    Schedule.objects.create(
        func="wagtail_maillog.sandbox.emit",
        args=repr((planned, (timezone.now() + timedelta(seconds=delay)).isoformat())),
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() + timedelta(seconds=delay),
        name=f"sandbox events {planned[0]['message_id']}"[:100],
    )
