"""Every setting of wagtail-maillog, its default and what it does.

Settings live in one dict, ``WAGTAIL_MAILLOG`` in the Django settings, and are
read at call time (so ``override_settings`` works in tests)::

    WAGTAIL_MAILLOG = {"STORE_BODY": False, "RETENTION_DAYS": 90}
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    # Keep the text and HTML body of each message (needed to resend it). Off: the
    # log is a record of what happened, not an archive. Never for sensitive mail.
    "STORE_BODY": False,
    # Sources of mail that carries a credential: never stored with its body.
    # (Password resets are recognised by Django's form, whatever their source.)
    "SENSITIVE_SOURCES": ["password_reset", "confirmation"],
    # Regular expressions of further one-time tokens to cut from stored bodies,
    # headers and click URLs (Django's reset links and signed values always are).
    "REDACT_PATTERNS": [],
    # Days of history kept before the purge task deletes it (None: keep forever).
    "RETENTION_DAYS": 30,
    # What the purge deletes: "messages" (everything of an old message) or
    # "events" (its event history, raw payloads and body; status rows stay).
    "PURGE_MODE": "messages",
    # Sources whose mail goes even to addresses with a problem status.
    "UNSUPPRESSED_SOURCES": ["password_reset"],
    # Confirmation requests (double opt-in): subject, templates (text and
    # optional HTML; context: address, confirm_url, member, days), link lifetime,
    # and the site address the link starts with (default WAGTAILADMIN_BASE_URL).
    "CONFIRMATION_SUBJECT": "Please confirm your email address",
    "CONFIRMATION_TEMPLATE": "wagtail_maillog/confirmation/request.txt",
    "CONFIRMATION_HTML_TEMPLATE": "wagtail_maillog/confirmation/request.html",
    "CONFIRMATION_MAX_AGE_DAYS": 14,
    "PUBLIC_BASE_URL": None,
    # Days a recipient may stay "deferred" before it counts as bounced.
    "DEFERRED_BOUNCE_DAYS": 5,
    # (module prefix, source) pairs: mail sent from code in that module gets that
    # "sent from" source and counts as system-generated unless told otherwise.
    # The first pair that matches any caller wins, so list specific ones first.
    "SYSTEM_SOURCES": [
        ("wagtail.contrib.forms", "form"),
        ("wagtail.admin.mail", "wagtail_notification"),
        ("wagtail.users", "wagtail_notification"),
        ("django.utils.log", "error_report"),
        ("django.middleware.common", "error_report"),
    ],
    # {source code: label} for the "sent from" column, added to the built-in ones.
    "SOURCE_LABELS": {},
    # Source given to mail nobody labelled.
    "DEFAULT_SOURCE": "system",
    # Outbox (EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend").
    # Named connectors: the real backends mail goes through. Each is
    # {"BACKEND": dotted path, "OPTIONS": {kwargs for it}, "ENABLED": bool}.
    "CONNECTORS": {},
    # The connector of mail that names none (label(msg, connector=...)).
    "DEFAULT_CONNECTOR": "default",
    # Seconds to wait before attempt 2, 3, ... (the last value repeats), or a
    # dotted path to a function(attempt: int) -> seconds.
    "RETRY_SCHEDULE": [60, 300, 1800, 7200],
    # Attempts before a message is failed and only a manual retry sends it.
    "MAX_ATTEMPTS": 5,
    # "Undo send": seconds a new message waits in the outbox, cancellable.
    "UNDO_SEND_SECONDS": 0,
    # Seconds a worker may hold a message before another may take it over.
    "LEASE_SECONDS": 300,
    # Messages one worker run claims at a time.
    "OUTBOX_BATCH": 100,
    # Requests per minute one client may make to the public pages (confirm,
    # unsubscribe); more get HTTP 429. None: no limit.
    "PUBLIC_RATE_LIMIT": 30,
    # Mailings: recipients per ESP call where the connector's ESP takes per-recipient
    # merge data (a connector may set {"MAILING": {"BATCH_SIZE": n, "MERGE_FIELD":
    # "%recipient.{}%"}}; without a known merge-field spelling, one call per recipient).
    "MAILING_BATCH_SIZE": 500,
    # Senders a mailing may use besides DEFAULT_FROM_EMAIL ("a@b" or "Name <a@b>" each).
    "MAILING_FROM_ADDRESSES": [],
    # Days an unsubscribe link in a mailing keeps working.
    "UNSUBSCRIBE_MAX_AGE_DAYS": 365,
    # Lost webhooks (hourly): ask the ESP about recipients without a final status
    # after this many hours (where a status fetcher exists), and mark those still
    # "queued"/"sent" after UNKNOWN_AFTER_HOURS as "unknown". None: off.
    "RECONCILE_AFTER_HOURS": 24,
    "UNKNOWN_AFTER_HOURS": 72,
    # A direct send (no outbox) still "sending" after this many minutes was cut short
    # (the process stopped mid-hand-over): reconciliation marks it "unknown". None: off.
    "SENDING_TIMEOUT_MINUTES": 60,
    # Sandbox ESP (demo and tests): seconds before simulated events arrive.
    # 0 emits them at once inside the send; None emits nothing.
    "SANDBOX_EVENT_DELAY": 0,
    # Largest raw ESP payload stored per event, in characters of JSON.
    "MAX_RAW_PAYLOAD": 20_000,
    # {email backend: status fetcher} (dotted paths; None: none), merged over
    # the built-in Postmark and Mailgun ones. See docs/fetchers.md.
    "FETCHERS": {},
    # ESPs whose webhook URLs answer (anymail names or URL prefixes, e.g.
    # ["postmark", "amazon_ses"], or "all"); None: those of EMAIL_BACKEND, MAILERS and
    # CONNECTORS. Every other /anymail/<esp>/ URL answers 404. See docs/installation.md.
    "WEBHOOK_ESPS": None,
    # Events one webhook request may carry (a larger batch: HTTP 413, nothing stored).
    "MAX_EVENTS_PER_REQUEST": 5000,
    # Hours after which mail handed to an ESP with no event back at all means its
    # webhook does not reach the site (the dashboard warns). See docs/installation.md.
    "WEBHOOK_SILENCE_HOURS": 6,
    # Deliverability: recipient domains counted on their own (mailbox providers,
    # or your members' organisations); every other domain is counted as "other".
    # Added to the built-in list (deliverability/figures.py: PROVIDER_DOMAINS).
    "DELIVERABILITY_DOMAINS": [],
    # Fewer recipients than this in a period say nothing about a rate: no
    # threshold is marked as crossed (the rate is still shown).
    "DELIVERABILITY_MIN_VOLUME": 100,
    # ESP calls one outbox worker run makes at once, once the ESP is slow (20 ms a
    # call or more), each thread with its own open connection per connector: a slow
    # ESP does not leave the worker idle. 1: every call in the worker's own thread.
    "SEND_THREADS": 8,
}


def get_setting(name: str) -> Any:
    """Return the setting ``name`` of ``WAGTAIL_MAILLOG``, or its default."""
    if name not in DEFAULTS:
        raise ImproperlyConfigured(f"wagtail-maillog has no setting {name!r}")
    return getattr(settings, "WAGTAIL_MAILLOG", {}).get(name, DEFAULTS[name])
