"""A guard around anymail's webhook views.

anymail answers 500 to a malformed body (its ``parse_events`` does not guard
``json.loads`` nor the shape of the data), and ESPs retry a 500 for hours. The
guard turns bad input into a 400 that writes nothing, and a storage failure
into a 503 so the ESP retries later. It also collects the events of one
request and stores them in one transaction (:mod:`wagtail_maillog.events`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
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
    """An event anymail parsed out of nothing: e.g. ``{}`` posted to Postmark's URL."""
    return event.event_type == "unknown" and not event.message_id and not event.recipient


def guard(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap an anymail webhook view: 4xx for bad input, 5xx only for our storage."""

    @csrf_exempt
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with collecting() as items:
            try:
                response = view(request, *args, **kwargs)
            except (SuspiciousOperation, PermissionDenied, Http404):
                raise  # Django answers these with 400/403/404 (bad auth is here)
            except DatabaseError:
                logger.warning("Database unavailable during a webhook", exc_info=True)
                return _retry_later()
            except Exception as exc:
                if _raised_by_a_receiver(exc):
                    raise  # another app's tracking receiver failed: 500, the ESP retries
                logger.warning(
                    "Rejected a malformed webhook at %s: %s: %s",
                    request.path,
                    type(exc).__name__,
                    exc,
                )
                return HttpResponse(
                    f"Malformed webhook payload ({type(exc).__name__}).",
                    status=400,
                    content_type="text/plain",
                )
        if response.status_code >= 300:
            return response
        if items and all(_is_empty(event) for event, _esp in items):
            logger.warning("Rejected a webhook at %s with no usable event", request.path)
            return HttpResponse(
                "No event in the payload names a message or a recipient.",
                status=400,
                content_type="text/plain",
            )
        try:
            ingest(items)
        except DatabaseError:
            logger.warning("Could not store %d webhook events", len(items), exc_info=True)
            return _retry_later()
        return response

    return guarded
