"""The public unsubscribe pages: no login, nothing to guess, no other member's data.

``GET`` only shows what the link would do and a button, so mail scanners that
open every link cannot unsubscribe anyone; the ``POST`` (CSRF-protected)
does it. The one-click URL (RFC 8058, ``List-Unsubscribe-Post``) takes a
``POST`` without a CSRF token, as mail clients send it, and nothing else.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from ..throttle import throttled
from .unsubscribe import Outcome, check, signed, unsubscribe

STATUS_CODES = {Outcome.INVALID: 404, Outcome.EXPIRED: 410}


def _masked(address: str) -> str:
    """``j•••@example.com``: enough for members to recognise theirs, not to harvest it."""
    local, _at, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


@never_cache
@require_http_methods(["GET", "POST"])
@throttled
def unsubscribe_view(request: HttpRequest, token: str) -> HttpResponse:
    checked = unsubscribe(token) if request.method == "POST" else check(token)
    return render(
        request,
        "wagtail_maillog/mailings/unsubscribe.html",
        {
            "outcome": checked.outcome,
            "address": _masked(checked.address.address) if checked.address else "",
            "preview": token == "preview",
        },
        status=STATUS_CODES.get(checked.outcome, 200),
    )


def _signed(request: HttpRequest, token: str) -> bool:
    return signed(token)


@csrf_exempt
@never_cache
@require_POST
@throttled(unless=_signed)  # a provider's server posts many a minute, each with a valid token
def one_click_view(request: HttpRequest, token: str) -> HttpResponse:
    if request.POST.get("List-Unsubscribe") != "One-Click":
        return HttpResponseBadRequest("Expected List-Unsubscribe=One-Click")
    checked = unsubscribe(token)
    code = STATUS_CODES.get(checked.outcome, 200)
    return HttpResponse(checked.outcome, status=code, content_type="text/plain")
