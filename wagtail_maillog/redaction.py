"""What of a message may be written to the log: nothing that opens an account.

The log is read by staff. A password reset link or a confirmation link read
there gives its reader the account or the address, so:

* mail that carries a credential is *sensitive* and never stored with its body,
  whatever ``STORE_BODY`` says: password resets (Django's and Wagtail's), our
  confirmation requests, any source in ``SENSITIVE_SOURCES`` and any message
  labelled ``label(msg, sensitive=True)``;
* in every other stored body, in the headers (``List-Unsubscribe``), in the
  click URLs ESPs report and in their events' payloads (which may carry a copy
  of the message), links that carry a one-time token are cut before they are
  written: Django's password reset URLs, Django's signed values (our
  confirmation and unsubscribe links), and what ``REDACT_PATTERNS`` adds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from .conf import get_setting

#: What stands where a token was.
REDACTED = "[redacted]"

#: Django's password reset URL, ``…/<uidb64>/<token>/``: the token is
#: ``<timestamp in base 36>-<32 hex digits>`` (``PasswordResetTokenGenerator``;
#: 20 hex digits for tokens made with SHA-1).
_RESET = re.compile(
    r"/[A-Za-z0-9_\-]{1,64}/[0-9a-z]{1,13}-(?:[0-9a-f]{32}|[0-9a-f]{20})(?![0-9a-f])"
)
#: ``django.core.signing`` output, ``<value>[:<timestamp>]:<signature>``, the
#: signature a SHA-256 HMAC in URL-safe base 64 (43 characters).
_SIGNED = re.compile(
    r"(?<![A-Za-z0-9_\-.])[A-Za-z0-9_\-.]{1,1024}(?::[0-9A-Za-z]{1,16})?:[A-Za-z0-9_\-]{43}"
    r"(?![A-Za-z0-9_\-])"
)


@lru_cache(maxsize=8)
def _extra(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def redact(text: str) -> str:
    """``text`` without the one-time tokens of the links it holds."""
    if not text:
        return text
    text = _RESET.sub(f"/{REDACTED}/{REDACTED}", text)
    text = _SIGNED.sub(REDACTED, text)
    for pattern in _extra(tuple(get_setting("REDACT_PATTERNS") or ())):
        text = pattern.sub(REDACTED, text)
    return text


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: redact(value) for name, value in headers.items()}


def is_sensitive(source: str, labelled: bool | None = None) -> bool:
    """Whether mail of ``source`` (or labelled so) carries a credential; a label
    cannot make a source of ``SENSITIVE_SOURCES`` storable."""
    return bool(labelled) or source in _sensitive_sources()


def _sensitive_sources() -> Iterable[str]:
    return get_setting("SENSITIVE_SOURCES") or ()


def scrub(message_model: Any, event_model: Any, chunk_size: int = 1000) -> int:
    """Remove the secrets of rows written before this module existed (migration
    0008 and ``manage.py maillog_scrub``): the bodies of sensitive mail, and the
    tokens in other stored bodies, in headers and in clicked URLs. Returns the
    number of rows changed. A migration passes its historical models.
    """
    changed = message_model.objects.filter(
        source__in=list(_sensitive_sources()), body_stored=True
    ).update(body_stored=False, body_text="", body_html="")
    messages = message_model.objects.only("pk", "headers", "body_text", "body_html")
    changed += _rewrite(messages, ["headers", "body_text", "body_html"], _scrub_message, chunk_size)
    return changed + scrub_events(event_model, chunk_size)


def scrub_events(event_model: Any, chunk_size: int = 1000) -> int:
    """The tokens in the events' clicked URLs, payloads and texts (migration 0021:
    before it, only a clicked token was cut from its event's payload)."""
    fields = ["click_url", "raw", "description", "mta_response"]
    return _rewrite(event_model.objects.only("pk", *fields), fields, _scrub_event, chunk_size)


def _scrub_message(row: Any) -> bool:
    before = (row.headers, row.body_text, row.body_html)
    row.headers = redact_headers(row.headers) if isinstance(row.headers, dict) else row.headers
    row.body_text, row.body_html = redact(row.body_text), redact(row.body_html)
    return (row.headers, row.body_text, row.body_html) != before


def _scrub_event(row: Any) -> bool:
    before = (row.click_url, row.description, row.mta_response)
    row.click_url, row.description, row.mta_response = (redact(text) for text in before)
    changed = (row.click_url, row.description, row.mta_response) != before
    if row.raw is not None:
        text = json.dumps(row.raw)
        cleaned = redact(text)
        if cleaned != text:
            row.raw, changed = json.loads(cleaned), True
    return changed


def _rewrite(queryset: Any, fields: list[str], change: Any, chunk_size: int) -> int:
    """Save the rows of ``queryset`` that ``change`` changed, ``chunk_size`` at a time."""
    changed, batch = 0, []
    for row in queryset.order_by("pk").iterator(chunk_size=chunk_size):
        if change(row):
            batch.append(row)
        if len(batch) >= chunk_size:
            queryset.model.objects.bulk_update(batch, fields)
            changed, batch = changed + len(batch), []
    if batch:
        queryset.model.objects.bulk_update(batch, fields)
        changed += len(batch)
    return changed
