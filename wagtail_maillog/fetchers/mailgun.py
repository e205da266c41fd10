"""Mailgun: the events API, filtered by message id.

``GET {api_url}{domain}/events?message-id=<id without angle brackets>``
with basic auth ("api", API key), then every ``paging.next`` page until an
empty one (at most ``MAX_PAGES``). Events are mapped as anymail's Mailgun
webhook maps them: "failed" with severity "temporary" is deferred, with
"permanent" bounced.

The sending domain is the connector's ``sender_domain`` option (or
``MAILGUN_SENDER_DOMAIN``), else the domain of the message's sender, else
the domain of the message id (Mailgun's ids end in ``@<sending domain>``).
Mailgun keeps events for a few days only (3 to 30, by plan): older mail
simply gets no events.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote

from anymail.exceptions import AnymailInvalidAddress
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from anymail.utils import parse_single_address
from anymail.webhooks.mailgun import MailgunTrackingWebhookView

from ..addresses import normalize
from .base import FetchError, StatusFetcher, addresses_by_id, domain_of, same_origin

logger = logging.getLogger(__name__)

#: Pages read per message at most (a page holds up to ``PAGE_LIMIT`` events).
MAX_PAGES = 20
PAGE_LIMIT = 300

#: anymail's own tables, so fetched events read like webhook events.
EVENT_TYPES: dict[str, str] = MailgunTrackingWebhookView.event_types
REJECT_REASONS: dict[str, str] = MailgunTrackingWebhookView.reject_reasons


def _bare(message_id: str) -> str:
    return message_id.strip().removeprefix("<").removesuffix(">")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class MailgunFetcher(StatusFetcher):
    esp_name = "Mailgun"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.api_key: str = self.setting("api_key", allow_bare=True)
        self.sender_domain: str | None = self.setting(
            "sender_domain", default=None, allow_bare=True
        )
        api_url = self.setting("api_url", default="https://api.mailgun.net/v3")
        self.api_url: str = api_url if api_url.endswith("/") else api_url + "/"

    def domain_for(self, message_id: str, from_email: str = "") -> str:
        domain = self.sender_domain or domain_of(from_email) or domain_of(_bare(message_id))
        if not domain:
            raise FetchError(
                f"Mailgun: no sending domain for message {message_id}: set the "
                '"sender_domain" option of the connector or ANYMAIL["MAILGUN_SENDER_DOMAIN"]'
            )
        return domain

    def fetch(
        self, items: list[tuple[str, str]], *, from_emails: Mapping[str, str] | None = None
    ) -> Iterator[AnymailTrackingEvent]:
        from_emails = from_emails or {}
        for message_id, addresses in addresses_by_id(items).items():
            domain = self.domain_for(message_id, from_emails.get(message_id, ""))
            for item in self._events(domain, _bare(message_id)):
                event = self.to_event(message_id, item)
                if (event.recipient or "") in addresses:
                    yield event

    def accepted(
        self,
        addresses: Collection[str],
        *,
        from_email: str,
        since: datetime,
        until: datetime,
    ) -> dict[str, str]:
        """The "accepted" events of the window from this sender, for these addresses.

        Mailgun logs one "accepted" per recipient of a batch; anymail's send
        answers each with the batch's message id, in angle brackets.
        """
        wanted = {normalize(a) for a in addresses}
        sender = parseaddr(from_email)[1]
        domain = self.domain_for("", sender)
        query = {
            "event": "accepted",
            "begin": f"{since.timestamp():.3f}",
            "end": f"{until.timestamp():.3f}",
            "ascending": "yes",
            "limit": PAGE_LIMIT,
        }
        if sender:
            query["from"] = sender
        found: dict[str, str] = {}
        what = f"accepted events since {since:%H:%M}"
        for item in self._pages(domain, query, what, must_finish=True):
            recipient = normalize(str(item.get("recipient") or ""))
            message_id = _dict(_dict(item.get("message")).get("headers")).get("message-id")
            if recipient in wanted and message_id and recipient not in found:
                found[recipient] = f"<{_bare(str(message_id))}>"
        return found

    def _events(self, domain: str, bare_id: str) -> Iterator[dict[str, Any]]:
        """Every event of one message, page after page."""
        query = {"message-id": bare_id, "limit": PAGE_LIMIT}
        for item in self._pages(domain, query, f"<{bare_id}>"):
            if self._about(item, bare_id):
                yield item

    def _pages(
        self, domain: str, query: dict[str, Any], what: str, must_finish: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The items of an events query, page after page (at most ``MAX_PAGES``; with
        ``must_finish``, a FetchError if there were more: a partial answer would do harm)."""
        url = f"{self.api_url}{quote(domain, safe='')}/events"
        params: dict[str, Any] | None = query
        for _page in range(MAX_PAGES):
            data = self._get(url, params, domain)
            page = data.get("items") if isinstance(data, dict) else None
            if not page:
                return
            for item in page:
                if isinstance(item, dict):
                    yield item
            url = str(_dict(data.get("paging")).get("next") or "")
            if not url:
                return
            if not same_origin(url, self.api_url):
                raise FetchError(f"Mailgun: paging.next leaves the API host ({self.api_url})")
            params = None  # the next URL carries the query
        if must_finish:
            raise FetchError(f"Mailgun: more than {MAX_PAGES} pages of {what}")
        logger.warning("Mailgun: stopped after %s pages of events for %s", MAX_PAGES, what)

    def _get(self, url: str, params: dict[str, Any] | None, domain: str) -> Any:
        """One page. An unknown message is an empty page, so a 404 is a wrong domain."""
        try:
            return self.get_json(url, params=params, auth=("api", self.api_key), missing_ok=False)
        except FetchError as exc:
            if exc.status_code != 404:
                raise
            raise FetchError(
                f"Mailgun: HTTP 404 for the events of domain {domain!r}: check the "
                "connector's sender_domain and that MAILGUN_API_URL is the domain's region",
                status_code=404,
                body=exc.body,
            ) from exc

    @staticmethod
    def _about(item: dict[str, Any], bare_id: str) -> bool:
        """Whether an event is about this message (when it says so)."""
        found = _dict(_dict(item.get("message")).get("headers")).get("message-id")
        return not found or _bare(str(found)) == bare_id

    def to_event(self, message_id: str, item: dict[str, Any]) -> AnymailTrackingEvent:
        """One events-API item as anymail's tracking event."""
        event_type = EVENT_TYPES.get(str(item.get("event")), EventType.UNKNOWN)
        if event_type == EventType.BOUNCED and item.get("severity") == "temporary":
            event_type = EventType.DEFERRED
        status = _dict(item.get("delivery-status"))
        description = status.get("description") or None
        mta_response = status.get("message") or None
        reason = item.get("reason")
        reject_reason = REJECT_REASONS.get(reason, RejectReason.OTHER) if reason else None
        recipient = str(item.get("recipient") or "")
        if event_type == EventType.REJECTED:
            description = description or _dict(item.get("reject")).get("reason")
            reject_reason = reject_reason or RejectReason.OTHER
            recipient = recipient or self._to_header(item)
        try:
            timestamp = datetime.fromtimestamp(float(item["timestamp"]), tz=UTC)
        except (KeyError, TypeError, ValueError, OverflowError):
            timestamp = None
        return AnymailTrackingEvent(
            event_type=event_type,
            timestamp=timestamp,
            message_id=message_id,
            event_id=str(item["id"]) if item.get("id") else None,
            recipient=recipient.strip().lower() or None,
            reject_reason=reject_reason,
            description=description,
            mta_response=mta_response,
            tags=item.get("tags") or [],
            metadata=_dict(item.get("user-variables")),
            click_url=item.get("url"),
            user_agent=_dict(item.get("client-info")).get("user-agent"),
            esp_event=item,
        )

    @staticmethod
    def _to_header(item: dict[str, Any]) -> str:
        to = _dict(_dict(item.get("message")).get("headers")).get("to")
        try:
            return parse_single_address(to).addr_spec if to else ""
        except (AnymailInvalidAddress, IndexError):
            return ""
