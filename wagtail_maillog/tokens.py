"""Signed, timestamped tokens of the public links (confirm, unsubscribe)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core import signing

EXPIRED = "expired"
INVALID = "invalid"


def make(data: dict[str, Any], salt: str) -> str:
    return signing.TimestampSigner(salt=salt).sign_object(data)


def read(token: str, salt: str, max_age_days: float) -> dict[str, Any] | str:
    """The token's data, or ``EXPIRED`` / ``INVALID`` (tampered, truncated, not ours)."""
    try:
        data = signing.TimestampSigner(salt=salt).unsign_object(
            token, max_age=timedelta(days=max_age_days)
        )
    except signing.SignatureExpired:
        return EXPIRED
    except (signing.BadSignature, ValueError, TypeError):
        return INVALID
    return data if isinstance(data, dict) else INVALID
