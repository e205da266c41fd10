"""A guard around anymail's webhook views.

Only the ESPs the site uses are served (:func:`served_esps`): every other
``/anymail/<esp>/`` URL answers 404 before anymail's view is built, so a POST
to the URL of an ESP whose signing key or package is missing cannot fail.

anymail answers 500 to a malformed body (its ``parse_events`` does not guard
``json.loads`` nor the shape of the data), and ESPs retry a 500 for hours. The
guard turns bad input into a 4xx that writes nothing and logs a warning (bad
auth and signatures included, which Django would log as errors: they also go
to Django's ``django.security.<exception>`` logger, at WARNING), a body nested
deeper than :data:`MAX_JSON_DEPTH` into a 400 before anything parses it, a
batch of more than ``MAX_EVENTS_PER_REQUEST`` events into a 413 before any is
recorded, a body that gives no usable event into a 400 unless it is a ping, a
failure of the ESP's own API while anymail reads the webhook (an SNS
subscription confirmation, a download of inbound mail) into a 502, and a
storage failure into a 503, both with Retry-After so the ESP retries later.
A missing setting or package of a used ESP stays a 500 (and is a system check
error, :mod:`wagtail_maillog.checks`). It also collects the events of one
request and stores them in one transaction (:mod:`wagtail_maillog.events`).
What this guarantees, and the tests that prove it: docs/reliability.md.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC
from functools import wraps
from typing import Any

from anymail.signals import inbound
from django.conf import settings
from django.core.exceptions import (
    ImproperlyConfigured,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db import DatabaseError, DataError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from . import storable, webhook_health
from .conf import get_setting
from .events import collecting, ingest
from .models import WebhookRejection

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30

#: Deepest nesting of ``[``/``{`` a webhook body may have. Real ESP payloads
#: nest fewer than ten levels (a site's own metadata a few more); anymail's
#: parsers and ours recurse once per level, and Python stops at ~1,000.
MAX_JSON_DEPTH = 100


def _retry_later() -> HttpResponse:
    response = HttpResponse("Temporarily unable to store events; please retry.", status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _esp_unavailable() -> HttpResponse:
    response = HttpResponse(
        "The ESP's API failed while reading this webhook; please retry.",
        status=502,
        content_type="text/plain",
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


# ---------------------------------------------------------------------------
# Which ESPs are served
# ---------------------------------------------------------------------------

#: Old names anymail still serves URLs for: the same ESP, so used together.
ESP_ALIASES = {"sendinblue": "brevo"}


@functools.lru_cache(maxsize=256)
def esp_key(name: str) -> str:
    """``"Amazon SES"``, ``"amazon_ses"`` or ``"amazon_ses/"`` -> ``"amazon_ses"``."""
    key = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    return ESP_ALIASES.get(key, key)


def view_esp(view_class: type) -> str:
    """The ESP of an anymail webhook view class (its ``esp_name``)."""
    return esp_key(view_class.esp_name)  # type: ignore[attr-defined]


def known_esps() -> frozenset[str]:
    """Every ESP anymail has webhook URLs for."""
    from anymail import urls as anymail_urls

    return frozenset(
        view_esp(p.callback.view_class)
        for p in anymail_urls.urlpatterns
        if hasattr(p.callback, "view_class")
    )


def _backend_paths() -> list[str]:
    """EMAIL_BACKEND (or Django 6.1's MAILERS) and the outbox connectors' BACKENDs."""
    mailers = getattr(settings, "MAILERS", None)
    if isinstance(mailers, dict) and mailers:
        paths = [m.get("BACKEND") for m in mailers.values() if isinstance(m, dict)]
    else:
        paths = [getattr(settings, "EMAIL_BACKEND", "")]
    connectors = get_setting("CONNECTORS") or {}
    if isinstance(connectors, dict):
        paths += [s.get("BACKEND") for s in connectors.values() if isinstance(s, dict)]
    return [p for p in paths if isinstance(p, str) and p]


@functools.lru_cache(maxsize=64)  # read on every webhook request: import once
def backend_esp(path: str) -> str | None:
    """The ESP an email backend sends through: its anymail ``esp_name``, if it has one.

    A backend that cannot be imported has none here (check E002 names it).
    """
    try:
        backend = import_string(path)
    except ImportError:
        return None
    name = getattr(backend, "esp_name", None)
    return esp_key(name) if isinstance(name, str) else None


def served_esps() -> frozenset[str] | None:
    """The ESPs whose webhook URLs answer; None: all of them.

    ``WAGTAIL_MAILLOG["WEBHOOK_ESPS"]`` if set (a list of names, or ``"all"``),
    else the ESPs of the site's email backends. Read on every request, so
    ``override_settings`` works.
    """
    wanted = get_setting("WEBHOOK_ESPS")
    if wanted is None:
        return frozenset(
            esp for esp in (backend_esp(path) for path in _backend_paths()) if esp is not None
        )
    if isinstance(wanted, str):
        wanted = [wanted]
    if any(isinstance(name, str) and name.strip().lower() == "all" for name in wanted):
        return None
    return frozenset(esp_key(name) for name in wanted)


def is_served(view_class: type) -> bool:
    served = served_esps()
    return served is None or view_esp(view_class) in served


def _not_found() -> HttpResponse:
    return HttpResponse("Not found.", status=404, content_type="text/plain")


# ---------------------------------------------------------------------------
# What the ESP's API answered, when anymail called it while parsing
# ---------------------------------------------------------------------------


def _retryable_status(status: int) -> bool:
    """An answer of the ESP's API that is no fault of the webhook's content.

    5xx, throttling and timeouts are the ESP's; 401/403 are this site's
    credentials. Any other 4xx (404: the message the webhook names is unknown)
    says the webhook itself is bad.
    """
    return status >= 500 or status in (401, 403, 408, 429)


def _api_verdict(exc: BaseException) -> bool | None:
    """True: the ESP's API failed or could not be reached; False: it refused the
    webhook's content; None: ``exc`` is no API error."""
    import requests

    if isinstance(exc, requests.RequestException):
        response = exc.response
        return True if response is None else _retryable_status(response.status_code)
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # boto3 is only needed for Amazon SES
        return None
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata") if isinstance(exc.response, dict) else None
        status = meta.get("HTTPStatusCode") if isinstance(meta, dict) else None
        return True if status is None else _retryable_status(status)
    if isinstance(exc, BotoCoreError):  # no connection, timeout, no credentials
        return True
    return None


def _esp_api_failed(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a failure of the ESP's own API.

    anymail calls it while parsing some webhooks: Amazon SNS subscription
    confirmations, S3 downloads of inbound mail, the inbound APIs of Resend,
    Mailtrap and Brevo. It raises the client's errors (requests, botocore) as
    they are, or wrapped with the original as ``__cause__``.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        verdict = _api_verdict(exc)
        if verdict is not None:
            return verdict
        exc = exc.__cause__ or exc.__context__
    return False


def _raised_by_a_receiver(exc: BaseException) -> bool:
    """Whether ``exc`` came out of a signal receiver rather than anymail's parsing.

    anymail parses the whole body before it sends any signal, so an exception
    raised inside Django's signal dispatch is a failure of some receiver, not
    bad input, and must not be answered with a 400 that the ESP never retries.
    """
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(os.path.join("dispatch", "dispatcher.py")):
            return True
        tb = tb.tb_next
    return False


def _is_empty(event: Any) -> bool:
    """An event that names neither a message nor a recipient: nothing can ever use it.

    anymail parses such events out of nothing, e.g. ``{}`` posted to Postmark's URL.
    """
    return not event.message_id and not event.recipient


#: ESPs whose anymail parser skips, on purpose, some messages that are not
#: garbage: Amazon SNS subscription confirmations, Postal's events about
#: incoming mail, Unisender Go's events other than ``transactional_email_status``.
#: A body of theirs that gives no event is accepted; of any other ESP, only a
#: ping without data is.
SKIPS_SOME_MESSAGES = frozenset({"Amazon SES", "Postal", "Unisender Go"})


def _blank(value: Any) -> bool:
    """Containers all the way down, without a single value: ``[]``, ``[{"msys": {}}]``."""
    if isinstance(value, dict):
        return all(_blank(v) for v in value.values())
    if isinstance(value, list):
        return all(_blank(v) for v in value)
    return False


def _blank_text(text: str) -> bool:
    try:
        return _blank(json.loads(text))
    except ValueError:
        return False


def _is_ping(request: HttpRequest) -> bool:
    """Whether the body holds no data at all: an ESP's test ping, not a lost batch."""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return all(_blank_text(v) for values in request.POST.lists() for v in values[1])
    return _blank_text(request.body.decode("utf-8", "replace"))


def _clean(value: Any) -> Any:
    """``value`` without what storage refuses (see :mod:`.storable`); form posts as dicts."""
    if isinstance(value, QueryDict):
        value = {k: v[0] if len(v) == 1 else v for k, v in value.lists()}
    return storable.json_value(value, None)


def _storable(event: Any) -> Any:
    """A copy of an anymail event without text the database or UTF-8 refuses."""
    clean = copy.copy(event)
    for name, value in vars(event).items():
        setattr(clean, name, _clean(value))
    return clean


VALIDATION_FAILED = "Webhook validation failed."


def _bad_request(text: str, status: int = 400) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain")


#: A JSON string (its end quote may be missing: then to the end), or a run of brackets.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET_RUN = re.compile(rb"[\[{]+|[\]}]+")
_EMPTY_PAIR = re.compile(rb"[\[{][\]}]")
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests ``[``/``{`` more than ``limit`` levels.

    Read without parsing (brackets inside strings do not count), in time
    linear in the body, so a hostile body is refused before any recursion.
    JSON inside a string (SNS's ``"Message"``, which anymail parses again)
    counts on its own.
    """
    openers = data.count(b"[") + data.count(b"{")
    if openers <= limit:
        return False
    outside = _JSON_STRING.sub(b"", data)
    if _brackets_too_deep(outside.translate(None, _NOT_A_BRACKET), limit):
        return True
    if openers - outside.count(b"[") - outside.count(b"{") <= limit:
        return False  # no string holds enough brackets to nest too deep
    return any(
        _string_too_deep(token, limit)
        for token in _JSON_STRING.findall(data)
        if token.count(b"[") + token.count(b"{") > limit
    )


def _brackets_too_deep(brackets: bytes, limit: int) -> bool:
    # The innermost pairs out first (``[]``, ``{}``): one level less, far fewer runs.
    brackets, limit = _EMPTY_PAIR.sub(b"", brackets), limit - 1
    depth = 0
    for run in _BRACKET_RUN.finditer(brackets):
        length = run.end() - run.start()
        if brackets[run.start()] in b"[{":
            depth += length
            if depth > limit:
                return True
        else:
            depth = max(depth - length, 0)
    return False


def _string_too_deep(token: bytes, limit: int) -> bool:
    try:
        text = json.loads(token)
    except ValueError:
        return False  # not a whole JSON string: nothing will parse what is inside
    return isinstance(text, str) and json_too_deep(text.encode("utf-8", "surrogatepass"), limit)


def _too_deep(request: HttpRequest) -> bool:
    """The body, or a field of a form body (Mandrill's and Mailgun's JSON), nests too deep."""
    if request.content_type == "multipart/form-data":
        # Inbound mail with files. Reading its fields here would make request.body
        # unreadable, which anymail's SendGrid inbound view reads after them.
        return False
    if request.content_type == "application/x-www-form-urlencoded":
        return any(
            json_too_deep(value.encode("utf-8", "surrogatepass"))
            for _key, values in request.POST.lists()
            for value in values
        )
    return json_too_deep(request.body)


def _instantiate(view: Callable[..., HttpResponse]) -> Any:
    """The view object, built as ``View.as_view()`` builds it (on every request).

    anymail reads its settings there: a missing signing key or package is the
    site's configuration, not the request's, so the caller lets it raise (500,
    logged as an error, and the ESP retries until it is fixed). The system
    check ``wagtail_maillog.E004`` says so before the site is deployed.
    """
    return view.view_class(**view.view_initkwargs)  # type: ignore[attr-defined]


class _TooManyEvents(Exception):
    pass


class _ParseWatch:
    """Marks when anymail starts parsing the body (after validating the request),
    and stops a batch larger than ``MAX_EVENTS_PER_REQUEST`` before any signal."""

    def __init__(self, instance: Any) -> None:
        self.started = False
        parse = instance.parse_events
        limit = get_setting("MAX_EVENTS_PER_REQUEST")

        def parse_events(request: HttpRequest) -> Any:
            self.started = True
            events = list(parse(request))
            if limit is not None and len(events) > limit:
                raise _TooManyEvents(f"{len(events)} events, at most {limit} are taken")
            return events

        instance.parse_events = parse_events


def _log_validation_failure(request: HttpRequest, exc: SuspiciousOperation) -> None:
    """Log bad basic auth or a bad signature where Django would, one level lower.

    Django logs a ``SuspiciousOperation`` to ``django.security.<its class>``
    (``django.security.AnymailWebhookValidationFailure``: sites filter that
    logger) as an error, which mails the admins; for a public URL that anyone
    can post to, a warning is enough.
    """
    logger.warning("Rejected a webhook at %s: %s", request.path, exc)
    logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(
        str(exc), extra={"status_code": 400, "request": request}
    )


def guard(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap an anymail webhook view: 4xx for bad input, 5xx only for our storage
    or the ESP's API; 404 for the URLs of ESPs the site does not use."""
    if not hasattr(view, "view_class"):
        raise TypeError(f"guard() wraps anymail's class-based views, not {view!r}")

    @csrf_exempt
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = answer(request, *args, **kwargs)
        if response.status_code in (400, 413):  # refused: counted for the webhook health page
            webhook_health.note_refused(view.view_class.esp_name, _refusal(response))  # type: ignore[attr-defined]
        return response

    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_served(view.view_class):  # type: ignore[attr-defined]
            return _not_found()
        try:
            instance = _instantiate(view)
        except ImproperlyConfigured as exc:
            if view.view_class.signal is not inbound:  # type: ignore[attr-defined]
                raise  # a setting or package of a used ESP is missing: 500, the ESP retries
            # Receiving mail through this ESP is not set up (no inbound secret or API key).
            logger.warning("Webhook at %s: inbound mail is not configured (%s)", request.path, exc)
            return _not_found()
        instance.setup(request, *args, **kwargs)
        parsing = _ParseWatch(instance)
        with collecting() as items:
            try:
                if request.method == "POST" and _too_deep(request):
                    logger.warning(
                        "Rejected a webhook at %s nested deeper than %d levels",
                        request.path,
                        MAX_JSON_DEPTH,
                    )
                    return _bad_request("Webhook payload nested too deeply.")
                response = instance.dispatch(request, *args, **kwargs)
            except RequestDataTooBig as exc:
                logger.warning(
                    "Rejected a webhook at %s: %s (see DATA_UPLOAD_MAX_MEMORY_SIZE)",
                    request.path,
                    exc,
                )
                return _bad_request("Webhook payload too large.", status=413)
            except _TooManyEvents as exc:
                logger.warning(
                    "Rejected a webhook at %s: %s (see MAX_EVENTS_PER_REQUEST)", request.path, exc
                )
                return _bad_request("Too many events in one request.", status=413)
            except SuspiciousOperation as exc:
                _log_validation_failure(request, exc)
                return _bad_request(VALIDATION_FAILED)
            except (PermissionDenied, Http404):
                raise  # Django answers these with 403/404
            except DatabaseError:
                logger.warning("Database unavailable during a webhook", exc_info=True)
                return _retry_later()
            except ImproperlyConfigured as exc:
                if not parsing.started or _raised_by_a_receiver(exc):
                    raise  # a setting or package of this site is missing: 500, the ESP retries
                # Raised by parsing: the ESP posts e.g. inbound mail to the tracking URL.
                return _malformed(request)
            except Exception as exc:
                if _raised_by_a_receiver(exc):
                    raise  # another app's tracking receiver failed: 500, the ESP retries
                if parsing.started and _esp_api_failed(exc):
                    logger.warning(
                        "Webhook at %s: the ESP's API failed while anymail read it",
                        request.path,
                        exc_info=True,
                    )
                    return _esp_unavailable()
                return _malformed(request)
            try:
                return _store(request, instance, items, response)
            except RecursionError:
                # Nesting inside a JSON string (SNS's "Message") that anymail parsed.
                logger.warning("Rejected a webhook at %s nested too deeply", request.path)
                return _bad_request("Webhook payload nested too deeply.")

    return guarded


def _refusal(response: HttpResponse) -> str:
    """Why the guard refused a request, as :class:`WebhookRejection` counts it."""
    if response.status_code == 413:
        return WebhookRejection.Reason.TOO_LARGE
    if response.content == VALIDATION_FAILED.encode():
        return WebhookRejection.Reason.VALIDATION
    return WebhookRejection.Reason.MALFORMED


def _store(
    request: HttpRequest, instance: Any, items: list[tuple[Any, str]], response: HttpResponse
) -> HttpResponse:
    """Store the events anymail parsed out of a request its view answered."""
    if request.method != "POST" or response.status_code >= 300 or instance.signal is inbound:
        return response  # HEAD/GET: the ESP checks the URL; inbound mail is not ours
    usable = [(event, esp) for event, esp in items if not _is_empty(event)]
    if not usable:
        if items or not (_is_ping(request) or instance.esp_name in SKIPS_SOME_MESSAGES):
            logger.warning("Rejected a webhook at %s with no usable event", request.path)
            return _bad_request("No event in the payload names a message or a recipient.")
        return response  # a ping, or a message the ESP's parser skips on purpose
    if len(usable) < len(items):
        logger.warning(
            "Dropped %d webhook events at %s that name no message nor recipient",
            len(items) - len(usable),
            request.path,
        )
    for event, _esp in usable:
        if event.timestamp is not None and timezone.is_naive(event.timestamp):
            event.timestamp = timezone.make_aware(event.timestamp, UTC)  # ESP time is UTC
    if b"NaN" in request.body or b"Infinity" in request.body:
        # Python's json reads them, JSON columns refuse them (and SQLite's
        # INSERT OR IGNORE would skip the row without a word).
        usable = [(_storable(event), esp) for event, esp in usable]
    try:
        try:
            ingest(usable)
        except (DataError, UnicodeError) as exc:
            # Text that PostgreSQL or UTF-8 cannot hold: bad input, not a failure
            # of the database. Stored with U+FFFD in place of each bad character.
            logger.warning("Webhook at %s: cleaned unstorable text (%s)", request.path, exc)
            ingest([(_storable(event), esp) for event, esp in usable])
    except DatabaseError:
        logger.warning("Could not store %d webhook events", len(usable), exc_info=True)
        return _retry_later()
    return response


def _malformed(request: HttpRequest) -> HttpResponse:
    exc = sys.exc_info()[1]
    logger.warning(
        "Rejected a malformed webhook at %s: %s: %s", request.path, type(exc).__name__, exc
    )
    return _bad_request(f"Malformed webhook payload ({type(exc).__name__}).")
