"""The message itself, kept while it waits: pickled and signed.

An ``EmailMessage`` carries anymail's extra attributes (tags, metadata,
merge data, esp_extra) that no MIME form keeps, so it is pickled. The pickle
is signed with the site's SECRET_KEY and checked before loading, so a row
written by anyone else is refused instead of executed.
"""

from __future__ import annotations

import copy
import hmac
import pickle
from dataclasses import replace
from typing import Any

from django.utils.crypto import salted_hmac

from ..context import ATTRIBUTE, MailLabel

SALT = "wagtail_maillog.outbox.payload"
NOTHING_SAID = MailLabel()


class TamperedPayload(Exception):
    """The stored message does not carry our signature."""


def _mac(data: bytes) -> str:
    return salted_hmac(SALT, data, algorithm="sha256").hexdigest()


def dump(message: Any, label: MailLabel | None = None) -> tuple[bytes, str]:
    """The pickled message and its signature. ``label``: the label that applied when it
    was queued, its ``mail_context`` included (gone by the time the worker sends it:
    whether it may go to problem addresses is decided then)."""
    clean = copy.copy(message)
    # An open backend is neither needed nor picklable. Django 6.1 keeps it as
    # ``_connection`` behind a deprecated ``connection`` property: set it without it.
    for attr in ("connection", "_connection"):
        if attr in clean.__dict__:
            clean.__dict__[attr] = None
    for attr in ("anymail_status", "_maillog_attempt_pk"):
        clean.__dict__.pop(attr, None)
    label = label if label is not None else clean.__dict__.get(ATTRIBUTE)
    if label is not None and label != NOTHING_SAID:
        # Who and what it is about are on the row already: no users or objects here.
        setattr(clean, ATTRIBUTE, replace(label, user=None, team=None, related=None))
    data = pickle.dumps(clean, protocol=pickle.HIGHEST_PROTOCOL)
    return data, _mac(data)


def load(data: bytes, mac: str) -> Any:
    data = bytes(data)
    if not hmac.compare_digest(_mac(data), mac):
        raise TamperedPayload("The stored message's signature does not match (SECRET_KEY changed?)")
    return pickle.loads(data)  # noqa: S301 (signed by us, checked above)
