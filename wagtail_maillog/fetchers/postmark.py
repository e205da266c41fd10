"""Postmark: the ``MessageEvents`` of the outbound message details API.

``GET {api_url}messages/outbound/{MessageID}/details`` lists what happened to
each recipient of a message: Delivered, Transient (delayed), Bounced,
Opened, LinkClicked, SubscriptionChanged. A "Bounced" event only carries the
bounce's id, so its kind (hard bounce, auto-responder, bad address, ...) is
read from ``GET {api_url}bounces/{BounceID}`` and mapped as anymail's Postmark
webhook maps it. The bounce id is also the event id of anymail's bounce
webhook, so a bounce that came both ways is stored once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from anymail.webhooks.postmark import PostmarkTrackingWebhookView

from ..addresses import normalize
from .base import FetchError, StatusFetcher, addresses_by_id, parse_timestamp

#: Postmark's error code for "Message not found" (sent with HTTP 422).
MESSAGE_NOT_FOUND = 701

#: MessageEvents types that need no look-up, as anymail's webhook would map them.
SIMPLE_TYPES: dict[str, str] = {
    "Delivered": EventType.DELIVERED,
    "Transient": EventType.DEFERRED,
    "Opened": EventType.OPENED,
    "LinkClicked": EventType.CLICKED,
    "SpamComplaint": EventType.COMPLAINED,
}

#: Postmark bounce ``Type`` → (anymail event type, reject reason), anymail's own table.
BOUNCE_TYPES: dict[str, tuple[str, str | None]] = PostmarkTrackingWebhookView.event_types


def _truthy(value: Any) -> bool:
    """Postmark writes some booleans of MessageEvents as "True"/"False" strings."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "")
    return bool(value)


class PostmarkFetcher(StatusFetcher):
    esp_name = "Postmark"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.server_token: str = self.setting("server_token", allow_bare=True)
        api_url = self.setting("api_url", default="https://api.postmarkapp.com/")
        self.api_url: str = api_url if api_url.endswith("/") else api_url + "/"
        self.headers = {"Accept": "application/json", "X-Postmark-Server-Token": self.server_token}

    def fetch(
        self, items: list[tuple[str, str]], *, from_emails: Mapping[str, str] | None = None
    ) -> Iterator[AnymailTrackingEvent]:
        for message_id, addresses in addresses_by_id(items).items():
            details = self._details(message_id)
            for item in (details or {}).get("MessageEvents") or []:
                if normalize(str(item.get("Recipient") or "")) in addresses:
                    yield self.to_event(message_id, item)

    def _details(self, message_id: str) -> dict[str, Any] | None:
        """The message's details; None when Postmark knows no such message."""
        url = f"{self.api_url}messages/outbound/{quote(message_id, safe='')}/details"
        try:
            return self.get_json(url, headers=self.headers)
        except FetchError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            if exc.status_code == 422 and body.get("ErrorCode") == MESSAGE_NOT_FOUND:
                return None
            raise

    def _bounce(self, bounce_id: Any) -> dict[str, Any] | None:
        if bounce_id in (None, ""):
            return None
        url = f"{self.api_url}bounces/{quote(str(bounce_id), safe='')}"
        return self.get_json(url, headers=self.headers)

    def to_event(self, message_id: str, item: dict[str, Any]) -> AnymailTrackingEvent:
        """One ``MessageEvents`` entry as anymail's tracking event."""
        kind = str(item.get("Type") or "")
        details = item.get("Details") if isinstance(item.get("Details"), dict) else {}
        event_type: str = SIMPLE_TYPES.get(kind, EventType.UNKNOWN)
        reject_reason: str | None = RejectReason.SPAM if kind == "SpamComplaint" else None
        description = details.get("Summary")
        mta_response = details.get("DeliveryMessage")
        event_id = None
        raw: dict[str, Any] = item
        if kind == "Bounced":
            bounce = self._bounce(details.get("BounceID"))
            event_type, reject_reason = EventType.BOUNCED, None
            if bounce:
                raw = {**item, "Bounce": bounce}
                event_type, reject_reason = BOUNCE_TYPES.get(
                    str(bounce.get("Type")), (EventType.BOUNCED, None)
                )
                description = bounce.get("Description") or description
                mta_response = bounce.get("Details") or mta_response
            if details.get("BounceID") not in (None, ""):
                event_id = str(details["BounceID"])
        elif kind == "SubscriptionChanged":
            if _truthy(details.get("SuppressSending", True)):
                reason = str(details.get("SuppressionReason") or "ManualSuppression")
                event_type, reject_reason = BOUNCE_TYPES.get(
                    reason, (EventType.UNSUBSCRIBED, RejectReason.UNSUBSCRIBED)
                )
            else:
                event_type, reject_reason = EventType.SUBSCRIBED, None
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=parse_timestamp(item.get("ReceivedAt")),
            message_id=message_id,
            event_id=event_id,
            recipient=str(item.get("Recipient") or "").strip().lower() or None,
            reject_reason=reject_reason,
            description=description,
            mta_response=mta_response,
            click_url=details.get("Link") or details.get("OriginalLink"),
            esp_event=raw,
        )
