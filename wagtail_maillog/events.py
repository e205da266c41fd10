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
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from django.db import connection, transaction
from django.http import QueryDict
from django.utils import timezone

from . import status as rules
from . import storable
from .bulk import JSONText, filter_in, insert_rows, update_fields
from .conf import get_setting
from .models import Event, Recipient
from .redaction import redact
from .signals import status_changed, status_changing

logger = logging.getLogger("wagtail_maillog")


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


_SETTING = object()


def jsonable(value: Any, limit: Any = _SETTING) -> Any:
    """The raw ESP payload as JSON-safe data, cut down to ``MAX_RAW_PAYLOAD``
    (or ``limit`` characters, for a caller that read the setting once)."""
    return _encoded(value, limit)[0]


def _encoded(value: Any, limit: Any = _SETTING) -> tuple[Any, str]:
    """:func:`jsonable`'s value, and its JSON text: measuring it against the
    limit encodes it anyway, and the insert writes that text."""
    if isinstance(value, QueryDict):
        value = {k: v[0] if len(v) == 1 else v for k, v in value.lists()}
    elif isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if limit is _SETTING:
        limit = get_setting("MAX_RAW_PAYLOAD")
    try:
        text = json.dumps(value)  # parsed JSON (most ESPs) needs no conversion
        converted = False
    except (TypeError, ValueError):
        text = json.dumps(value, default=str)
        converted = True
    cleaned = storable.json_text(text)  # NUL, lone surrogates: from a fetcher, a signal
    if cleaned is not text:
        text, converted = cleaned, True
    if connection.vendor == "mysql" and _mariadb_refuses(text, value):
        value, converted = _for_mariadb(json.loads(text) if converted else value), False
        text = json.dumps(value)
    if limit and len(text) > limit:
        value = {"truncated": True, "text": text[:limit]}
        return value, json.dumps(value)
    return (json.loads(text) if converted else value), text


#: MariaDB keeps JSON as text with a ``CHECK (JSON_VALID(...))``, which refuses what
#: PostgreSQL's ``jsonb`` and SQLite take: nesting of 32 levels or more, a lone UTF-16
#: surrogate (``"\ud800"``, which ``json.loads`` accepts), NaN and infinities. The
#: insert would fail with an IntegrityError (4025) however often the ESP retried.
MARIADB_JSON_DEPTH = storable.MARIADB_JSON_DEPTH
_SURROGATE_ESCAPE = re.compile(r"\\ud[89a-f]", re.IGNORECASE)
_NOT_FINITE = re.compile(r"\b(?:NaN|-?Infinity)\b")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _mariadb_refuses(text: str, value: Any) -> bool:
    """Whether MariaDB's JSON_VALID could refuse ``text`` (cheap checks first)."""
    return (
        bool(_SURROGATE_ESCAPE.search(text))  # also a valid pair: checked as a whole below
        or bool(_NOT_FINITE.search(text))
        or (
            text.count("[") + text.count("{") > MARIADB_JSON_DEPTH
            and _depth(value) > MARIADB_JSON_DEPTH
        )
    )


def _for_mariadb(value: Any) -> Any:
    """``value`` as MariaDB stores it: U+FFFD for each surrogate, NaN and infinities
    as text, and each object or array nested too deep as its JSON text."""
    return storable.json_value(value, None, max_depth=MARIADB_JSON_DEPTH)


def dedupe_key(esp_name: str, event: Any, raw: Any) -> str:
    """The ESP's event id where it gives one, else a hash of the event's content."""
    if event.event_id:
        # With the recipient: Amazon SES gives all recipients of one notification its id.
        basis = f"id\0{esp_name}\0{event.event_id}\0{_text(event.recipient).strip().lower()}"
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
    """An event's text as every database stores it (see :mod:`.storable`)."""
    return "" if value is None else storable.text(str(value))


@dataclass(slots=True)
class EventRow:
    """An event on its way into the database: the values of an :class:`Event` row.

    Plain attributes instead of a model instance: building a thousand model
    instances per webhook POST cost more than storing them.
    """

    esp_name: str
    esp_message_id: str
    address: str
    event_type: str
    timestamp: datetime | None
    event_id: str
    dedupe_key: str
    description: str
    mta_response: str
    reject_reason: str
    click_url: str
    user_agent: str
    raw: Any
    raw_json: str = ""  # ``raw`` encoded, when known: stored as it is
    recipient: Any = None  # set by apply_events: the Recipient (or RecipientState), or None

    #: The columns :func:`insert_events` writes, in this order (then ``received_at``).
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "esp_name",
        "esp_message_id",
        "address",
        "event_type",
        "timestamp",
        "event_id",
        "dedupe_key",
        "description",
        "mta_response",
        "reject_reason",
        "click_url",
        "user_agent",
        "raw",
        "recipient",
    )

    def values(self) -> tuple[Any, ...]:
        return (
            self.esp_name,
            self.esp_message_id,
            self.address,
            self.event_type,
            self.timestamp,
            self.event_id,
            self.dedupe_key,
            self.description,
            self.mta_response,
            self.reject_reason,
            self.click_url,
            self.user_agent,
            JSONText(self.raw_json) if self.raw_json else self.raw,
            None if self.recipient is None else self.recipient.pk,
        )


@dataclass(slots=True)
class RecipientState:
    """What ingesting reads and writes of a :class:`Recipient` (no model instance)."""

    pk: int
    esp_message_id: str
    address: str
    status: str
    status_at: datetime | None
    opened_at: datetime | None
    reason: str

    FIELDS: ClassVar[tuple[str, ...]] = (
        "pk",
        "esp_message_id",
        "address",
        "status",
        "status_at",
        "opened_at",
        "reason",
    )


def event_row(event: Any, esp_name: str, limit: Any = _SETTING) -> EventRow:
    """The row to store for an anymail ``AnymailTrackingEvent``."""
    raw, raw_json = _encoded(event.esp_event, limit)
    click_url = _text(event.click_url)
    if click_url and redact(click_url) != click_url:
        # A click on a reset or unsubscribe link: the token is not for staff to read.
        click_url, raw_json = redact(click_url), redact(raw_json)
        raw = json.loads(raw_json)
    return EventRow(
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
        click_url=click_url,
        user_agent=_text(event.user_agent),
        raw=raw,
        raw_json=raw_json,
    )


def insert_events(rows: list[EventRow]) -> None:
    """One INSERT of all rows, received now; an event stored meanwhile (same dedupe key)
    is skipped."""
    received_at = timezone.now()
    insert_rows(
        Event, (*EventRow.COLUMNS, "received_at"), ((*row.values(), received_at) for row in rows)
    )


def lock_esp_ids(esp_ids: Iterable[str]) -> None:
    """PostgreSQL: one transaction at a time per ESP message id, until commit.

    Storing events and storing the ESP's answer (which adopts orphans) take
    these locks before reading each other's rows, so an event that finds no
    recipient is always seen by the answer's adoption, and the other way round.
    """
    keys = sorted({zlib.crc32(i.encode()) for i in esp_ids if i})
    if keys and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", [keys])


def _known_keys(keys: list[str]) -> set[str]:
    known: set[str] = set()
    for events in filter_in(Event.objects.all(), "dedupe_key", keys):
        known.update(events.values_list("dedupe_key", flat=True))
    return known


def _recipients_for(esp_ids: Iterable[str]) -> list[RecipientState]:
    """The recipients with these ESP ids, locked (PostgreSQL) against lost updates."""
    locked = Recipient.objects.select_for_update(
        no_key=connection.features.has_select_for_no_key_update
    ).order_by("pk")
    found: list[RecipientState] = []
    for recipients in filter_in(locked, "esp_message_id", sorted(set(esp_ids))):
        found.extend(
            RecipientState(*values) for values in recipients.values_list(*RecipientState.FIELDS)
        )
    return found


def _failure_reason(row: EventRow | Event) -> str:
    return row.description or row.mta_response or row.reject_reason


def apply_events(
    rows: Sequence[EventRow | Event], recipients: Sequence[RecipientState | Recipient]
) -> tuple[list[Any], list[StatusChange]]:
    """Attach each event to its recipient(s) and move their statuses.

    Sets ``row.recipient`` (left empty for orphans) and changes ``recipients``
    in memory; returns the changed ones and the changes, for the caller to save.
    """
    by_address: dict[tuple[str, str], list[Any]] = defaultdict(list)
    by_id: dict[str, list[Any]] = defaultdict(list)
    for r in recipients:
        by_address[(r.esp_message_id, r.address)].append(r)
        by_id[r.esp_message_id].append(r)

    before = {r.pk: r.status for r in recipients}
    touched: dict[int, Any] = {}
    last_event: dict[int, Any] = {}
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


def _save_recipients(recipients: list[Any]) -> None:
    update_fields(recipients, ["status", "status_at", "opened_at", "reason"], model=Recipient)


def announce(changes: list[StatusChange]) -> None:
    """Address health now, in the caller's transaction; ``status_changed`` after commit.

    Address health (a bounce marks the address) is part of storing the events:
    if it fails, nothing is stored and the webhook answers 503, so the ESP's
    retry applies both. Run after the commit instead, a failure there was
    answered 503 too, but the retry found every event stored and the address
    kept its old status. Other apps' receivers still run after the commit,
    each on its own: one that fails is logged and cannot undo or repeat what
    is stored.
    """
    if not changes:
        return
    status_changing.send(sender=Event, changes=changes)  # address health (apps.ready)
    transaction.on_commit(partial(_notify, changes))


def _notify(changes: list[StatusChange]) -> None:
    for receiver, result in status_changed.send_robust(sender=Event, changes=changes):
        if isinstance(result, Exception):
            logger.error(
                "wagtail_maillog: status_changed receiver %r failed", receiver, exc_info=result
            )


def ingest(items: Iterable[tuple[Any, str]]) -> IngestResult:
    """Store a batch of (anymail tracking event, esp_name) pairs, all or nothing."""
    prepared: dict[str, EventRow] = {}
    duplicates = 0
    limit = get_setting("MAX_RAW_PAYLOAD")
    for event, esp_name in items:
        row = event_row(event, esp_name, limit)
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
        lock_esp_ids(r.esp_message_id for r in rows)
        recipients = _recipients_for(r.esp_message_id for r in rows if r.esp_message_id)
        changed, result.changes = apply_events(rows, recipients)
        # A concurrent request may have stored the same event meanwhile: the
        # unique key keeps it once, and re-applying a status is harmless.
        insert_events(rows)
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
    for events in filter_in(
        Event.objects.filter(recipient__isnull=True), "esp_message_id", esp_ids
    ):
        orphans.extend(events.order_by("pk"))
    if not orphans:
        return []
    changed, changes = apply_events(orphans, recipients)
    update_fields([o for o in orphans if o.recipient is not None], ["recipient"])
    _save_recipients(changed)
    announce(changes)
    return changes
