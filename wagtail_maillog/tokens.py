"""Signed, timestamped tokens of the public links (confirm, unsubscribe)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing

EXPIRED = "expired"
INVALID = "invalid"


def make(data: dict[str, Any], salt: str) -> str:
    return _signer(salt, settings.SECRET_KEY).sign_object(data)


@lru_cache(maxsize=16)
def _signer(salt: str, key: str) -> signing.TimestampSigner:
    """One signer per salt and key: a mailing makes a token per member, and building
    the signer each time (settings lookups) was a third of the token's cost."""
    return signing.TimestampSigner(key=key, salt=salt)


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
