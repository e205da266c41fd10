"""A small per-client limit for the public pages (confirm, unsubscribe).

Tokens are signed, so guessing one is hopeless anyway; the limit keeps a
client from hammering the pages (and the database behind them). Counted in
Django's cache per client address and minute; over the limit: HTTP 429 with
``Retry-After``. ``PUBLIC_RATE_LIMIT`` requests per minute (None: off).

A view can let through what cannot be abuse (``unless``): the one-click unsubscribes
(RFC 8058) of a mailing come from the mailbox providers' few servers, many a minute
from one address, each with a valid token.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from .conf import get_setting


def client_key(request: HttpRequest) -> str:
    """The client's address as the server sees it (behind a proxy: configure the proxy)."""
    return request.META.get("REMOTE_ADDR", "") or "unknown"


Predicate = Callable[..., bool]


def throttled(
    view: Callable[..., HttpResponse] | None = None, *, unless: Predicate | None = None
) -> Any:
    """Limit ``view`` per client; a request for which ``unless(request, *args,
    **kwargs)`` is true is neither limited nor counted."""
    if view is None:
        return functools.partial(throttled, unless=unless)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limit = get_setting("PUBLIC_RATE_LIMIT")
        if limit and not (unless and unless(request, *args, **kwargs)):
            minute = int(time.time() // 60)
            key = f"wagtail_maillog:throttle:{client_key(request)}:{minute}"
            cache.add(key, 0, timeout=90)
            try:
                count = cache.incr(key)
            except ValueError:  # evicted between add and incr
                count = 1
            if count > limit:
                response = HttpResponse(
                    "Too many requests; try again in a minute.",
                    status=429,
                    content_type="text/plain",
                )
                response["Retry-After"] = str(60 - int(time.time()) % 60)
                return response
        return view(request, *args, **kwargs)

    return wrapper
