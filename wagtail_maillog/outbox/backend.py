"""``EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"``.

Sending becomes: record the message (status "pending"), put it in the
outbox, wake a django-q2 worker after the transaction commits. The worker
sends it through its connector (see :mod:`wagtail_maillog.outbox.worker`).

Queueing one mail is three statements: the message, its recipients and the
outbox row, whose INSERT also reads the connector's switch
(:func:`.connectors.queued_state`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.db import connections, router, transaction
from django.utils import timezone

from .. import status as rules
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


def enqueue(message: Any) -> OutboxItem:
    """Record ``message`` and put it in the outbox (inside the caller's transaction)."""
    label = label_for(message)
    connector = connectors.resolve(label.connector)
    now = timezone.now()
    row = record_message(message, connector=connector, status=rules.Status.PENDING)
    state, due = _when(label, now)
    if state == SendState.QUEUED:
        state = connectors.queued_state(connector)
    payload, mac = dump(message)
    return _insert(
        OutboxItem(
            message=row,
            connector=connector,
            state=state,
            created_at=now,
            next_attempt_at=due,
            payload=payload,
            payload_mac=mac,
        )
    )


def _insert(item: OutboxItem) -> OutboxItem:
    """INSERT ``item``; a state the INSERT decides comes back with the pk (RETURNING).

    MySQL, which has no RETURNING, decides the state with a query first.
    """
    if not hasattr(item.state, "resolve_expression"):
        item.save(force_insert=True)
        return item
    using = router.db_for_write(OutboxItem)
    if not connections[using].features.can_return_columns_from_insert:
        enabled = connectors.is_enabled(item.connector)
        item.state = SendState.QUEUED if enabled else SendState.CONNECTOR_DISABLED
        item.save(force_insert=True)
        return item
    meta = OutboxItem._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    [(pk, state)] = OutboxItem._base_manager._insert(
        [item], fields=fields, returning_fields=[meta.pk, meta.get_field("state")], using=using
    )
    item.pk, item.state = pk, state
    item._state.adding, item._state.db = False, using
    return item


class OutboxBackend(BaseEmailBackend):
    """Queues mail in the outbox instead of sending it in the request."""

    def send_messages(self, email_messages: Any) -> int:
        if not email_messages:
            return 0
        from .worker import wake

        with transaction.atomic():
            for message in email_messages:
                enqueue(message)
            transaction.on_commit(wake)
        return len(email_messages)
