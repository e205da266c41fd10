"""Mail of a switched-off connector waits as "connector disabled"; when the connector
is on again, it goes back in the queue.

Shared by the worker (each run) and the connector switch in the admin
(:func:`.connectors.set_enabled`), which need not know each other.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import Case, Value, When
from django.db.models.functions import Coalesce

from ..models import OutboxItem, SendState
from ..models.outbox import WAITING


def park_disabled(enabled: Collection[str], now: datetime) -> int:
    """Due mail of connectors not in ``enabled`` shows "connector disabled".

    Only mail that is due: scheduled or undo-send mail keeps its time.
    """
    return (
        OutboxItem.objects.filter(state__in=WAITING, next_attempt_at__lte=now)
        .exclude(connector__in=enabled)
        .update(state=SendState.CONNECTOR_DISABLED)
    )


def release_enabled(enabled: Collection[str], now: datetime) -> int:
    """Mail parked for a connector that is on again goes back in the queue (it was due)."""
    return OutboxItem.objects.filter(
        state=SendState.CONNECTOR_DISABLED, connector__in=enabled
    ).update(
        state=Case(
            When(attempts=0, then=Value(SendState.QUEUED)),
            default=Value(SendState.RETRY_PENDING),
        ),
        next_attempt_at=Coalesce("next_attempt_at", Value(now)),
    )
