"""When to try again after a failed hand-over, and whether to try at all."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailUnsupportedFeature,
)
from django.utils import timezone
from django.utils.module_loading import import_string

from ..conf import get_setting

#: Errors that another attempt cannot fix: the mail is failed at once.
PERMANENT = (
    AnymailRecipientsRefused,
    AnymailInvalidAddress,
    AnymailUnsupportedFeature,
    AnymailConfigurationError,
)


def delay_after(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    schedule = get_setting("RETRY_SCHEDULE")
    if isinstance(schedule, str):
        return float(import_string(schedule)(attempt))
    if not schedule:
        return 60.0
    return float(schedule[min(attempt, len(schedule)) - 1])


def is_permanent(error: BaseException) -> bool:
    if isinstance(error, PERMANENT):
        return True
    status = getattr(error, "status_code", None)
    if isinstance(error, AnymailAPIError) and status is not None:
        return 400 <= status < 500 and status not in (408, 409, 425, 429)
    return False


def retry_after(error: BaseException) -> float | None:
    """The ESP's ``Retry-After`` (seconds or an HTTP date), if it sent one."""
    response: Any = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def next_attempt(attempt: int, error: BaseException) -> timedelta | None:
    """How long until the next automatic attempt, or None when there is none."""
    if is_permanent(error) or attempt >= get_setting("MAX_ATTEMPTS"):
        return None
    seconds = delay_after(attempt)
    asked = retry_after(error)
    if asked is not None:
        seconds = max(seconds, asked)
    return timedelta(seconds=seconds)
