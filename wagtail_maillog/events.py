"""Set-based storage of ESP tracking events.

anymail sends its ``tracking`` signal once per event, inside the webhook
request. :func:`collecting` buffers those events and :func:`ingest` writes a
whole batch at once: one query for known events, one for the recipients, one
insert, one update — whatever the batch size.

Matching is on (ESP message id, address), never on the id alone: Postmark and
SparkPost use one id for every recipient of a message.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.http import QueryDict
from django.utils import timezone

from . import status as rules
from .bulk import insert_ignoring_conflicts, update_fields
from .conf import get_setting
from .models import Event, Recipient
from .signals import status_changed

#: Lookups of more keys than this are split (SQLite caps query parameters).
CHUNK = 900


@dataclass(frozen=True)
class StatusChange:
    recipient_id: int
    address: str
    old: str
    new: str
    event_type: str | None
    reject_reason: str


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    orphans: int = 0
    changes: list[StatusChange] = field(default_factory=list)


_buffer: ContextVar[list[tuple[Any, str]] | None] = ContextVar(
    "wagtail_maillog_event_buffer", default=None
)


@contextmanager
def collecting() -> Iterator[list[tuple[Any, str]]]:
    """Buffer the tracking events sent inside the block instead of storing them."""
    items: list[tuple[Any, str]] = []
    token = _buffer.set(items)
    try:
        yield items
    finally:
        _buffer.reset(token)


def on_tracking(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """anymail ``tracking`` receiver: buffer inside a webhook, else store now."""
    items = _buffer.get()
    if items is not None:
        items.append((event, esp_name))
    else:
        ingest([(event, esp_name)])


def jsonable(value: Any) -> Any:
    """The raw ESP payload as JSON-safe data, cut down to ``MAX_RAW_PAYLOAD``."""
    if isinstance(value, QueryDict):
        value = {k: v[0] if len(v) == 1 else v for k, v in value.lists()}
    elif isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    limit = get_setting("MAX_RAW_PAYLOAD")
    try:
        text = json.dumps(value)  # parsed JSON (most ESPs) needs no conversion
        converted = False
    except (TypeError, ValueError):
        text = json.dumps(value, default=str)
        converted = True
    if limit and len(text) > limit:
        return {"truncated": True, "text": text[:limit]}
    return json.loads(text) if converted else value


def dedupe_key(esp_name: str, event: Any, raw: Any) -> str:
    """The ESP's event id where it gives one, else a hash of the event's content."""
    if event.event_id:
        basis = f"id\0{esp_name}\0{event.event_id}"
    else:
        stamp = event.timestamp.isoformat() if event.timestamp else ""
        content = json.dumps(raw, sort_keys=True, default=str)
        basis = "\0".join(
            [
                "content",
                esp_name,
                str(event.event_type),
                str(event.message_id or ""),
                str(event.recipient or ""),
                stamp,
                content,
            ]
        )
    return hashlib.sha256(basis.encode()).hexdigest()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def event_row(event: Any, esp_name: str) -> Event:
    """An unsaved :class:`Event` for an anymail ``AnymailTrackingEvent``."""
    raw = jsonable(event.esp_event)
    return Event(
        esp_name=esp_name[:64],
        esp_message_id=_text(event.message_id)[:255],
        address=_text(event.recipient).strip().lower()[:254],
        event_type=_text(event.event_type)[:32],
        timestamp=event.timestamp,
        event_id=_text(event.event_id)[:255],
        dedupe_key=dedupe_key(esp_name, event, raw),
        description=_text(event.description),
        mta_response=_text(event.mta_response),
        reject_reason=_text(event.reject_reason)[:32],
        click_url=_text(event.click_url),
        user_agent=_text(event.user_agent),
        raw=raw,
    )


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _known_keys(keys: list[str]) -> set[str]:
    known: set[str] = set()
    for part in _chunks(keys):
        known.update(Event.objects.filter(dedupe_key__in=part).values_list("dedupe_key", flat=True))
    return known


def _recipients_for(esp_ids: Iterable[str]) -> list[Recipient]:
    """The recipients with these ESP ids, locked (PostgreSQL) against lost updates."""
    found: list[Recipient] = []
    for part in _chunks(sorted(set(esp_ids))):
        found.extend(
            Recipient.objects.select_for_update()
            .filter(esp_message_id__in=part)
            .order_by("pk")
            .only("pk", "esp_message_id", "address", "status", "status_at", "opened_at", "reason")
        )
    return found


def _failure_reason(row: Event) -> str:
    return row.description or row.mta_response or row.reject_reason


def apply_events(
    rows: list[Event], recipients: list[Recipient]
) -> tuple[list[Recipient], list[StatusChange]]:
    """Attach each event to its recipient(s) and move their statuses.

    Sets ``row.recipient`` (left empty for orphans) and changes ``recipients``
    in memory; returns the changed ones and the changes, for the caller to save.
    """
    by_address: dict[tuple[str, str], list[Recipient]] = defaultdict(list)
    by_id: dict[str, list[Recipient]] = defaultdict(list)
    for r in recipients:
        by_address[(r.esp_message_id, r.address)].append(r)
        by_id[r.esp_message_id].append(r)

    before = {r.pk: r.status for r in recipients}
    touched: dict[int, Recipient] = {}
    last_event: dict[int, Event] = {}
    for row in rows:
        targets = by_address.get((row.esp_message_id, row.address), [])
        if not targets and not row.address and len(by_id.get(row.esp_message_id, [])) == 1:
            targets = by_id[row.esp_message_id]  # a message-level event, one recipient
        row.recipient = targets[0] if targets else None
        new_status = rules.status_for_event(row.event_type, row.reject_reason or None)
        at = row.timestamp or timezone.now()
        for r in targets:
            touched[r.pk] = r
            if new_status in rules.ENGAGED and (r.opened_at is None or at < r.opened_at):
                r.opened_at = at
            if new_status is None:
                continue
            current = rules.Current(r.status, r.status_at)
            after = rules.transition(current, new_status, at)
            if after != current:
                r.status, r.status_at = after.status, after.at
                last_event[r.pk] = row
                if new_status in rules.FAILURES:
                    r.reason = _failure_reason(row)

    changes = [
        StatusChange(
            recipient_id=r.pk,
            address=r.address,
            old=before[r.pk],
            new=r.status,
            event_type=last_event[r.pk].event_type if r.pk in last_event else None,
            reject_reason=last_event[r.pk].reject_reason if r.pk in last_event else "",
        )
        for r in touched.values()
        if r.status != before[r.pk]
    ]
    return list(touched.values()), changes


def _save_recipients(recipients: list[Recipient]) -> None:
    update_fields(recipients, ["status", "status_at", "opened_at", "reason"])


def announce(changes: list[StatusChange]) -> None:
    if changes:
        transaction.on_commit(lambda: status_changed.send(sender=Event, changes=changes))


def ingest(items: Iterable[tuple[Any, str]]) -> IngestResult:
    """Store a batch of (anymail tracking event, esp_name) pairs, all or nothing."""
    prepared: dict[str, Event] = {}
    duplicates = 0
    for event, esp_name in items:
        row = event_row(event, esp_name)
        if row.dedupe_key in prepared:
            duplicates += 1
        else:
            prepared[row.dedupe_key] = row
    result = IngestResult(duplicates=duplicates)
    if not prepared:
        return result

    with transaction.atomic():
        known = _known_keys(list(prepared))
        rows = [row for key, row in prepared.items() if key not in known]
        result.duplicates += len(known)
        if not rows:
            return result
        recipients = _recipients_for(r.esp_message_id for r in rows if r.esp_message_id)
        changed, result.changes = apply_events(rows, recipients)
        # A concurrent request may have stored the same event meanwhile: the
        # unique key keeps it once, and re-applying a status is harmless.
        insert_ignoring_conflicts(rows)
        _save_recipients(changed)
        result.stored = len(rows)
        result.orphans = sum(1 for r in rows if r.recipient is None)
        announce(result.changes)
    return result


def attach_orphans(recipients: list[Recipient]) -> list[StatusChange]:
    """Give orphan events of these (just sent) recipients their owner, in order."""
    esp_ids = sorted({r.esp_message_id for r in recipients if r.esp_message_id})
    if not esp_ids:
        return []
    orphans: list[Event] = []
    for part in _chunks(esp_ids):
        orphans.extend(
            Event.objects.filter(recipient__isnull=True, esp_message_id__in=part).order_by("pk")
        )
    if not orphans:
        return []
    changed, changes = apply_events(orphans, recipients)
    update_fields([o for o in orphans if o.recipient is not None], ["recipient"])
    _save_recipients(changed)
    announce(changes)
    return changes
