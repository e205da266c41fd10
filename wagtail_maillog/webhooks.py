"""A guard around anymail's webhook views.

anymail answers 500 to a malformed body (its ``parse_events`` does not guard
``json.loads`` nor the shape of the data), and ESPs retry a 500 for hours. The
guard turns bad input into a 4xx that writes nothing and logs a warning (bad
auth and signatures included, which Django would log as errors), a body that
gives no usable event into a 400 unless it is a ping, and a storage failure
into a 503 so the ESP retries later. A missing setting or package stays a 500.
It also collects the events of one request and stores them in one
transaction (:mod:`wagtail_maillog.events`). What this guarantees, and the
tests that prove it: docs/reliability.md.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC
from functools import wraps
from typing import Any

from anymail.signals import inbound
from django.core.exceptions import (
    ImproperlyConfigured,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db import DatabaseError, DataError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .events import collecting, ingest

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30


def _retry_later() -> HttpResponse:
    response = HttpResponse("Temporarily unable to store events; please retry.", status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


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


#: What hostile JSON can carry and storage refuses: NUL (PostgreSQL) and lone
#: UTF-16 surrogates (UTF-8). ``json.loads`` accepts ``"\u0000"`` and ``"\ud800"``.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON for PostgreSQL
    if isinstance(value, QueryDict):
        value = {k: v[0] if len(v) == 1 else v for k, v in value.lists()}
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _storable(event: Any) -> Any:
    """A copy of an anymail event without text the database or UTF-8 refuses."""
    clean = copy.copy(event)
    for name, value in vars(event).items():
        setattr(clean, name, _clean(value))
    return clean


def _bad_request(text: str, status: int = 400) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain")


def _instantiate(view: Callable[..., HttpResponse]) -> Any:
    """The view object, built as ``View.as_view()`` builds it (on every request).

    anymail reads its settings there: a missing signing key or package is the
    site's configuration, not the request's, so the caller lets it raise (500,
    logged as an error, and the ESP retries until it is fixed).
    """
    return view.view_class(**view.view_initkwargs)  # type: ignore[attr-defined]


class _ParseWatch:
    """Marks when anymail starts parsing the body (after validating the request)."""

    def __init__(self, instance: Any) -> None:
        self.started = False
        parse = instance.parse_events

        def parse_events(request: HttpRequest) -> Any:
            self.started = True
            return parse(request)

        instance.parse_events = parse_events


def guard(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap an anymail webhook view: 4xx for bad input, 5xx only for our storage."""
    if not hasattr(view, "view_class"):
        raise TypeError(f"guard() wraps anymail's class-based views, not {view!r}")

    @csrf_exempt
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        instance = _instantiate(view)
        instance.setup(request, *args, **kwargs)
        parsing = _ParseWatch(instance)
        with collecting() as items:
            try:
                response = instance.dispatch(request, *args, **kwargs)
            except RequestDataTooBig as exc:
                logger.warning(
                    "Rejected a webhook at %s: %s (see DATA_UPLOAD_MAX_MEMORY_SIZE)",
                    request.path,
                    exc,
                )
                return _bad_request("Webhook payload too large.", status=413)
            except SuspiciousOperation as exc:
                # Bad basic auth or signature. Django would log it as an error;
                # for a public URL that anyone can post to, a warning is enough.
                logger.warning("Rejected a webhook at %s: %s", request.path, exc)
                return _bad_request("Webhook validation failed.")
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
                return _malformed(request)
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

    return guarded


def _malformed(request: HttpRequest) -> HttpResponse:
    exc = sys.exc_info()[1]
    logger.warning(
        "Rejected a malformed webhook at %s: %s: %s", request.path, type(exc).__name__, exc
    )
    return _bad_request(f"Malformed webhook payload ({type(exc).__name__}).")
