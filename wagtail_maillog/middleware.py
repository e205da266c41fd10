"""Remember the signed-in user of a request, so the mail it sends is theirs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .context import current_user_context, reset_context


class MailLogUserMiddleware:
    """Put after ``AuthenticationMiddleware``; mail sent in a request gets its user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        token = current_user_context(user)
        try:
            return self.get_response(request)
        finally:
            reset_context(token)
