"""Signed, timestamped tokens of the public links (confirm, unsubscribe)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils.encoding import force_bytes

EXPIRED = "expired"
INVALID = "invalid"


def make(data: dict[str, Any], salt: str) -> str:
    return _signer(salt, settings.SECRET_KEY).sign_object(data)


class _Signer(signing.TimestampSigner):
    """Django's ``TimestampSigner``, byte for byte, with its HMAC key derived once.

    Django derives the key (a SHA-256 of salt and secret) again for every
    signature; a mailing signs one token per member.
    """

    def __init__(self, key: str, salt: str) -> None:
        super().__init__(key=key, salt=salt, algorithm="sha256")
        derived = hashlib.sha256(force_bytes(self.salt + "signer") + force_bytes(key)).digest()
        self._mac = hmac.new(derived, digestmod=hashlib.sha256)

    def signature(self, value: str | bytes, key: Any = None) -> str:
        if key is not None and key != self.key:
            return super().signature(value, key)
        mac = self._mac.copy()
        mac.update(force_bytes(value))
        return signing.b64_encode(mac.digest()).decode()


@lru_cache(maxsize=16)
def _signer(salt: str, key: str) -> signing.TimestampSigner:
    """One signer per salt and key: a mailing makes a token per member, and building
    the signer each time (settings lookups) was a third of the token's cost."""
    return _Signer(key=key, salt=salt)


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
