"""``EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"``.

Sending becomes: record the message (status "pending"), put it in the
outbox, wake a django-q2 worker after the transaction commits. The worker
sends it through its connector (see :mod:`wagtail_maillog.outbox.worker`).

Queueing one mail writes the message, its recipients and the outbox row, whose
INSERT also reads the connector's switch (:func:`.connectors.queued_state`):
one statement on PostgreSQL (a function whose plan the session keeps, once it
has queued a few: :func:`..recording._insert`), three elsewhere
(:func:`..bulk.insert_linked`), built once per connection, not model instances
saved: one ``send()`` per mail is how most sites send.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.utils import timezone

from .. import status as rules
from ..bulk import Linked
from ..conf import get_setting
from ..context import label_for
from ..models import OutboxItem, SendState
from ..recording import record_message
from . import connectors
from .payload import dump


def _when(label: Any, now: datetime) -> tuple[str, datetime]:
    """The first state and due time: scheduled, or queued after the undo delay."""
    if label.send_at is not None and label.send_at > now:
        return SendState.SCHEDULED, label.send_at
    delay = label.undo_seconds
    if delay is None:
        delay = get_setting("UNDO_SEND_SECONDS")
    return SendState.QUEUED, now + timedelta(seconds=delay or 0)


def enqueue(message: Any) -> int:
    """Record ``message`` and put it in the outbox; the message's pk."""
    label = label_for(message)
    connector = connectors.resolve(label.connector)
    now = timezone.now()
    state, due = _when(label, now)
    if state == SendState.QUEUED:
        state = connectors.queued_state(connector)  # the INSERT reads the switch
    payload, mac = dump(message, label)
    outbox = {
        "connector": connector,
        "state": state,
        "created_at": now,
        "next_attempt_at": due,
        "payload": payload,
        "payload_mac": mac,
    }
    return record_message(
        message,
        esp_name=connectors.esp_name(connector),  # the log shows it while the mail waits
        connector=connector,
        status=rules.Status.PENDING,
        linked=[Linked(OutboxItem, "message", [outbox])],
    )


class OutboxBackend(BaseEmailBackend):
    """Queues mail in the outbox instead of sending it in the request."""

    def send_messages(self, email_messages: Any) -> int:
        if not email_messages:
            return 0
        from .worker import wake

        # One mail is atomic by itself (record_message), and one statement on PostgreSQL.
        with transaction.atomic() if len(email_messages) > 1 else nullcontext():
            for message in email_messages:
                enqueue(message)
            transaction.on_commit(wake)
        return len(email_messages)
