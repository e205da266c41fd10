"""The public confirmation page: no login, no stack traces, nothing to guess.

GET only shows what the link is worth and a button; the POST confirms. Mail
scanners that open every link in a message therefore cannot use it up.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from ..throttle import throttled
from .confirmation import Outcome, check, confirm

STATUS_CODES = {Outcome.INVALID: 404, Outcome.EXPIRED: 410, Outcome.USED: 410}


@never_cache
@require_http_methods(["GET", "POST"])
@throttled
def confirm_view(request: HttpRequest, token: str) -> HttpResponse:
    checked = confirm(token) if request.method == "POST" else check(token)
    done = request.method == "POST" and checked.outcome == Outcome.CONFIRMED
    return render(
        request,
        "wagtail_maillog/confirmation/page.html",
        {
            "outcome": checked.outcome,
            "address": checked.address.address if checked.address else "",
            "done": done,
            "ask": request.method == "GET" and checked.outcome == Outcome.CONFIRMED,
        },
        status=STATUS_CODES.get(checked.outcome, 200),
    )
